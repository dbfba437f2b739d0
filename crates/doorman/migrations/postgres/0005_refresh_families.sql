-- Refresh-token families: the same columns and meaning as
-- migrations/sqlite/0005_refresh_families.sql. `family` is the jti of the family's first token
-- (NULL on rows written before: each is a family of its own); `rotated_at_ms` is when a
-- rotation blacklisted the row, in Unix milliseconds, and `replaced_by` the jti of the token
-- that rotation made. Adding nullable columns rewrites nothing; the index is built while the
-- migration holds the table.
ALTER TABLE outstanding_tokens ADD COLUMN family TEXT;
ALTER TABLE outstanding_tokens ADD COLUMN rotated_at_ms BIGINT;
ALTER TABLE outstanding_tokens ADD COLUMN replaced_by TEXT;
CREATE INDEX outstanding_tokens_family ON outstanding_tokens (family);
