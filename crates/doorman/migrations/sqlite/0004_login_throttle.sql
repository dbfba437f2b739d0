-- Login throttling: the failure counters every login attempt is reserved against before any
-- password is hashed. `scope` is 'pair' (one username from one address), 'account' (one
-- username from addresses it has not logged in from lately), 'address' (one address across
-- usernames) or 'known' (an address the username logged in from lately; only `expires_at`
-- counts). `username` is '' for 'address' rows, `addr` is '' for 'account' rows. Times are Unix
-- milliseconds; a row past `expires_at` counts as empty and is pruned.
CREATE TABLE login_throttle (
    scope TEXT NOT NULL,
    username TEXT NOT NULL,
    addr TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    blocked_until INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, username, addr)
);
CREATE INDEX login_throttle_expires_at ON login_throttle (expires_at);
CREATE INDEX login_throttle_username ON login_throttle (username);
