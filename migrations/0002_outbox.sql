-- The transactional outbox: every order change inserts its event here in the same transaction
-- as the change, so DynamoDB and Kafka can be fed later without losing or inventing anything.

CREATE TABLE outbox_events (
    id             uuid        PRIMARY KEY,            -- the event id consumers dedupe by
    seq            bigserial   NOT NULL UNIQUE,        -- insertion order, for oldest-first draining
    order_id       uuid        NOT NULL,
    order_version  bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    trace_id       text,
    payload        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per event and sink, so an outage of one sink never holds back the other.
CREATE TABLE outbox_deliveries (
    event_id        uuid        NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    sink            text        NOT NULL CHECK (sink IN ('dynamodb', 'kafka')),
    -- Copied from the event so the per-order ordering check needs no join.
    order_id        uuid        NOT NULL,
    order_version   bigint      NOT NULL,
    seq             bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'parked')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (event_id, sink)
);

-- The relay's claim: pending rows of a sink, oldest first.
CREATE INDEX outbox_deliveries_pending_idx ON outbox_deliveries (sink, seq) WHERE state = 'pending';
-- Its ordering check: is an earlier version of the same order still pending for this sink?
CREATE INDEX outbox_deliveries_order_idx ON outbox_deliveries (sink, order_id, order_version) WHERE state = 'pending';
-- Parked rows, listed by the CLI.
CREATE INDEX outbox_deliveries_parked_idx ON outbox_deliveries (sink, seq) WHERE state = 'parked';
