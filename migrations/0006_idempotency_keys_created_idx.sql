-- no-transaction
-- Keys in creation order: expired keys are the oldest (built as 0005 explains).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);
