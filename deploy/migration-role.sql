-- The migration role that owns the ledger's schema, and a read-only backup role
-- (issue #11). Run ONCE, as a superuser, before `reserve init`:
--
--     psql -d ledger -v ON_ERROR_STOP=1 -f deploy/migration-role.sql
--
-- Then, as ledger_owner, `reserve init` (Alembic creates tables and triggers in schema
-- `ledger`, owned by ledger_owner), and deploy/postgres-roles.sql grants the runtime role
-- `ledger_app` only what the service needs. This file does not touch ledger_app's grants.
--
-- Passwords are not set here: give each role a credential out of band, e.g.
--     \password ledger_owner
-- or use peer / certificate authentication in pg_hba.conf (preferred on the same host).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_owner') THEN
        -- Owns the schema; runs migrations and restores. Not a superuser, cannot
        -- create roles or databases.
        CREATE ROLE ledger_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_backup') THEN
        -- Reads everything for `reserve backup`, writes nothing.
        CREATE ROLE ledger_backup LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS ledger AUTHORIZATION ledger_owner;
-- Nobody creates objects in `public` (CVE-2018-1058 style search_path attacks).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- In this database only, the roles find the ledger's tables in schema `ledger`.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ledger_owner', 'ledger_backup', 'ledger_app'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = ledger', r, current_database());
        END IF;
    END LOOP;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ledger_owner, ledger_backup', current_database());
END $$;

-- The backup role: read-only on every table the owner creates, now and later.
GRANT USAGE ON SCHEMA ledger TO ledger_backup;
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO ledger_backup;
ALTER DEFAULT PRIVILEGES FOR ROLE ledger_owner IN SCHEMA ledger
    GRANT SELECT ON TABLES TO ledger_backup;
