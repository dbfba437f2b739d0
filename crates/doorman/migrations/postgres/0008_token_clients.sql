-- Sessions: the same columns and meaning as migrations/sqlite/0008_token_clients.sql: the
-- address and User-Agent (cut to 512 characters) of the request a refresh or sliding token was
-- issued to, at login and for each rotation's successor; NULL on older rows. Adding nullable
-- columns rewrites nothing.
ALTER TABLE outstanding_tokens ADD COLUMN client_addr TEXT;
ALTER TABLE outstanding_tokens ADD COLUMN user_agent TEXT;
