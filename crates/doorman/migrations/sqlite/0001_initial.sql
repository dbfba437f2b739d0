-- Users, outstanding refresh tokens and the blacklist: the tables of Django's auth_user and
-- simplejwt's token_blacklist app, keyed by jti (raw tokens are never stored). Times are
-- integer Unix seconds so the same meaning carries to PostgreSQL's BIGINT.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_superuser INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    last_login INTEGER,
    date_joined INTEGER NOT NULL
);

CREATE TABLE outstanding_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL UNIQUE,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at INTEGER,
    expires_at INTEGER NOT NULL
);
CREATE INDEX outstanding_tokens_expires_at ON outstanding_tokens (expires_at);
CREATE INDEX outstanding_tokens_user_id ON outstanding_tokens (user_id);

CREATE TABLE blacklisted_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id INTEGER NOT NULL UNIQUE REFERENCES outstanding_tokens (id) ON DELETE CASCADE,
    blacklisted_at INTEGER NOT NULL
);
