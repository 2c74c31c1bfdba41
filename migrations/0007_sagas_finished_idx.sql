-- no-transaction
-- Finished sagas by when they finished, for their retention (built as 0005 explains).
CREATE INDEX CONCURRENTLY IF NOT EXISTS sagas_finished_idx ON sagas (updated_at)
    WHERE state IN ('CONFIRMED', 'CANCELLED');
