-- Sessions: who a refresh or sliding token was issued to, for the account's list of its
-- sessions (a session is a refresh-token family). `client_addr` is the address the request
-- came from (behind trusted proxies, the forwarded one) and `user_agent` its User-Agent, cut to
-- 512 characters; both recorded at login and for each rotation's successor, NULL on rows
-- written before this migration or when the request had none.
ALTER TABLE outstanding_tokens ADD COLUMN client_addr TEXT;
ALTER TABLE outstanding_tokens ADD COLUMN user_agent TEXT;
