-- Least-privilege database roles (docs/security.md): `conveyor grant`, run by the schema's owner.

-- name: grant_access
-- Make the role's privileges on the schema exactly those of %(access)s ('worker' or 'api');
-- one row per statement run (see grant_access_v1 in sql/migrations/0015_database_roles.up.sql).
SELECT {schema}.grant_access_v1(%(role)s, %(access)s);
