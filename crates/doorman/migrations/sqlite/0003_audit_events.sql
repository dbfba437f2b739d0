-- The audit trail: security events (logins, password and account changes, key changes), one
-- row each, never a password or a token. `user_id` has no foreign key on purpose: deleting a
-- user keeps the record of what happened to them. `at` is Unix seconds; `id` orders events
-- recorded within one second. The user agent is cut to 512 characters before it is stored.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    username TEXT,
    user_id INTEGER,
    client_addr TEXT,
    user_agent TEXT CHECK (length(user_agent) <= 512),
    detail TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_username ON audit_events (username);
