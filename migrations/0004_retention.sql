-- Retention: every table that grows with traffic has an expiry (order-service's retention loop,
-- src/retention.rs), and an index that finds what expired without scanning the table.

-- A parked delivery an operator gave up on (`order-service outbox drop`): it no longer keeps
-- its event in the outbox. NOT VALID then VALIDATE: the check is verified without blocking
-- writes for the length of a table scan.
ALTER TABLE outbox_deliveries DROP CONSTRAINT outbox_deliveries_state_check;
ALTER TABLE outbox_deliveries ADD CONSTRAINT outbox_deliveries_state_check
    CHECK (state IN ('pending', 'delivered', 'parked', 'dropped')) NOT VALID;
ALTER TABLE outbox_deliveries VALIDATE CONSTRAINT outbox_deliveries_state_check;

-- Deletes run in small batches all day long: vacuum these tables after a few percent of dead
-- rows instead of the default 20 %, so dead tuples never pile up between passes.
ALTER TABLE outbox_events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE outbox_deliveries SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE idempotency_keys SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE sagas SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
