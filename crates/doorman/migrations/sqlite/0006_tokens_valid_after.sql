-- Log out everywhere: the second at or before which every token of the user was revoked
-- (`revoke-all`, `user revoke`, a password set, a deactivation). A token whose `iat` is at or
-- before it is refused; NULL: never revoked. Unix seconds, like the other times.
ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER;
