-- Runtime role for the ledger service on PostgreSQL (DESIGN.md point 5).
--
-- The schema is owned by a migration role (the one that runs `reserve init` / Alembic).
-- The service connects as `ledger_app`, which may read and append but can never UPDATE,
-- DELETE or TRUNCATE the append-only tables: even with the triggers dropped by a
-- careless owner, the running service cannot rewrite history.
--
-- Grants are by table class (issue #8, item 10), so a new table needs one line here:
--   history      append-only (triggers refuse UPDATE/DELETE/TRUNCATE): SELECT, INSERT
--   service      written once per request, never changed: SELECT, INSERT
--   heads        one row each, moved forward on every append: SELECT, INSERT, UPDATE
--   working      state that changes but is not history (proposals): SELECT, INSERT, UPDATE
--   expiring     spent and purged (login nonces): SELECT, INSERT, UPDATE, DELETE
--   projections  materialised state, rebuilt from the log at will (upserts; a resolved
--                transfer or a zero test balance is deleted): SELECT, INSERT, UPDATE, DELETE
--   readonly     changed by administrators only (the witness list), and alembic_version: SELECT
-- A table of the schema in no class gets nothing, and a WARNING says so.
--
-- Run as the schema owner, in the ledger's database, with search_path set to the
-- ledger's schema:   psql -d ledger -f deploy/postgres-roles.sql
-- Re-run after each migration that adds tables (it is idempotent).
DO $$
DECLARE
    app CONSTANT text := 'ledger_app';
    s CONSTANT text := current_schema();
    history CONSTANT text[] := ARRAY['entries', 'tree_nodes', 'checkpoints', 'postings',
        'site_locations', 'access_log', 'access_checkpoints',
        'balance_snapshots', 'balance_snapshot_rows'];  -- snapshots: migration 0014
    service CONSTANT text[] := ARRAY['idempotency_keys', 'revoked_tokens'];
    -- Witness cosignatures are append-only (issue #10); the witness list is changed by the
    -- admin's `reserve witness add` (the migration role), the service only reads it.
    -- Owner-scoped audit (issue #14): commitments, secrets and the v2 switch, append-only.
    appended CONSTANT text[] := ARRAY['cosignatures', 'owner_commitments', 'owner_keys',
        'owner_scope'];
    readonly CONSTANT text[] := ARRAY['witnesses'];
    heads CONSTANT text[] := ARRAY['log_state', 'access_state'];
    -- Working state that is not history (issue #9): co-signature proposals change status
    -- (a proposal enters the log only when complete, as an entry); login nonces are
    -- spent and purged.
    working CONSTANT text[] := ARRAY['proposals', 'proposal_signatures'];
    expiring CONSTANT text[] := ARRAY['auth_nonces'];
    projections CONSTANT text[] := ARRAY['keys', 'test_balances', 'owners', 'materials',
        'lots', 'sites', 'targets', 'balances', 'transfers', 'loans', 'movements',
        'policies', 'prices', 'release_requests', 'release_orders'];
    t text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', app);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, app);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, app);
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = s LOOP
        IF t = ANY(history) OR t = ANY(service) OR t = ANY(appended) THEN
            EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO %I', s, t, app);
        ELSIF t = ANY(heads) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.%I TO %I', s, t, app);
        ELSIF t = ANY(working) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.%I TO %I', s, t, app);
        ELSIF t = ANY(expiring) OR t = ANY(projections) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I', s, t, app);
        ELSIF t = 'alembic_version' OR t = ANY(readonly) THEN
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', s, t, app);
        ELSE
            RAISE WARNING 'table %.% has no grant class in postgres-roles.sql: % gets nothing', s, t, app;
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, app);
END $$;
