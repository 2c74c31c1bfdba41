-- no-transaction
-- Events in creation order: the retention loop deletes the oldest delivered ones first.
-- CONCURRENTLY (so outside a transaction: the directive above, and one statement per file, as
-- PostgreSQL runs a multi-statement string as one transaction) so building it never blocks
-- order writes on a large table; IF NOT EXISTS so a rerun after an interrupted build goes on.
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_events_created_idx ON outbox_events (created_at);
