-- Runtime role for the ledger service on PostgreSQL (DESIGN.md point 5).
--
-- The schema is owned by a migration role (the one that runs `reserve init` / Alembic).
-- The service connects as `ledger_app`, which may read and append but can never UPDATE,
-- DELETE or TRUNCATE the append-only tables: even with the triggers dropped by a
-- careless owner, the running service cannot rewrite history.
--
-- Run as the schema owner, in the ledger's database, with search_path set to the
-- ledger's schema:   psql -d ledger -f deploy/postgres-roles.sql
-- Re-run after each migration that adds tables (it is idempotent).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app') THEN
        CREATE ROLE ledger_app LOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ledger_app', current_schema());
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM ledger_app', current_schema());
    -- Append-only history.
    GRANT SELECT, INSERT ON entries, tree_nodes, checkpoints TO ledger_app;
    -- Mutable projections and the head row, rebuilt from the history at will.
    GRANT SELECT, INSERT, UPDATE ON log_state, keys, test_balances TO ledger_app;
    GRANT SELECT ON alembic_version TO ledger_app;
    -- Login nonces and co-signature proposals (migration 0006, issue #9): working state,
    -- not history (a proposal enters the log only when complete, as an entry).
    GRANT SELECT, INSERT, UPDATE, DELETE ON auth_nonces TO ledger_app;
    GRANT SELECT, INSERT, UPDATE ON proposals, proposal_signatures TO ledger_app;
END $$;
