-- The managed key set (`doorman keys generate|rotate|retire`): key pairs shared by every
-- instance on this database. A key is `next` (published, not yet signing), `current` (signs;
-- at most one), `retiring` (verifies until retire_after, when every token it signed has
-- expired) or `retired` (kept for the record, never used). Times are Unix seconds.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('next', 'current', 'retiring', 'retired')),
    private_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    state_since BIGINT NOT NULL,
    retire_after BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
