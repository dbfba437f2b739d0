-- Refresh-token families (RFC 9700 section 4.14.2): every refresh token descends from one
-- login, and the store, not the token, says which. `family` is the jti of the family's first
-- token (a login's token names itself; a rotated token inherits its predecessor's family);
-- NULL on rows written before this migration, each of which is then a family of its own.
-- `rotated_at_ms` is when a rotation blacklisted the row (Unix milliseconds, finer than the
-- other times because the reuse grace window is judged on it); NULL for a row never rotated
-- out, blacklisted or not. `replaced_by` is the jti of the token that rotation made (set with
-- `rotated_at_ms`): a replay inside the grace window is answered with that successor again,
-- while it is live. A replay of a rotated-out token past the grace window blacklists every
-- row of its family, found through the index.
ALTER TABLE outstanding_tokens ADD COLUMN family TEXT;
ALTER TABLE outstanding_tokens ADD COLUMN rotated_at_ms INTEGER;
ALTER TABLE outstanding_tokens ADD COLUMN replaced_by TEXT;
CREATE INDEX outstanding_tokens_family ON outstanding_tokens (family);
