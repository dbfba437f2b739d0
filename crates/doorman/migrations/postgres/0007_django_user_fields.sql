-- The columns of Django's auth_user that doorman lacked: the same columns and meaning as
-- migrations/sqlite/0007_django_user_fields.sql. Staff flag, email and names (empty string for
-- "none", as in Django), and the hex SHA-256 of the password hash as last copied from Django
-- (NULL: never imported), so a later import changes the password only when Django's hash
-- changed since. Columns with constant defaults are added without rewriting the table.
ALTER TABLE users ADD COLUMN is_staff BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN first_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN last_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN imported_password_sha256 TEXT;
