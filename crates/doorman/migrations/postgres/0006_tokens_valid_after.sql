-- Log out everywhere: the same column and meaning as
-- migrations/sqlite/0006_tokens_valid_after.sql. The second at or before which every token of
-- the user was revoked; a token whose `iat` is at or before it is refused; NULL: never revoked.
ALTER TABLE users ADD COLUMN tokens_valid_after BIGINT;
