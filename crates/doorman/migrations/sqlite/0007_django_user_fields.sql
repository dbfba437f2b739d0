-- The columns of Django's auth_user that doorman lacked, so that `doorman import django` keeps
-- every user whole: staff flag, email and names (Django's empty string for "none", as in
-- Django). `imported_password_sha256` is the hex SHA-256 of the password hash as last copied
-- from Django (NULL: never imported): a later import changes the password only when Django's
-- hash changed since, so an upgrade doorman made on login, or a password set here, is never
-- undone by a copy of the hash it replaced.
ALTER TABLE users ADD COLUMN is_staff INTEGER NOT NULL DEFAULT 0 CHECK (is_staff IN (0, 1));
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN first_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN last_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN imported_password_sha256 TEXT;
