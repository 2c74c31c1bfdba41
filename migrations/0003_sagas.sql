-- The order fulfilment saga: one row per order created while participants are configured.
-- Workers of any replica claim due rows (a lease: claimed_by/claimed_until, taken with
-- FOR UPDATE SKIP LOCKED), run the current step, and record where the saga stands, so a
-- crashed worker's saga is resumed by another once its lease ends.

CREATE TABLE sagas (
    order_id         uuid        PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    -- RUNNING (forward steps), COMPENSATING (undoing), CONFIRMED or CANCELLED (finished).
    state            text        NOT NULL CHECK (state IN ('RUNNING', 'COMPENSATING', 'CONFIRMED', 'CANCELLED')),
    -- The step to run next (saga/machine.rs names them); 'done' once finished.
    step             text        NOT NULL,
    -- Attempts of the current step so far.
    attempts         integer     NOT NULL DEFAULT 0,
    -- Since when the saga is at this step: what `order-service sagas --stuck` measures.
    step_since       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    -- Why the order is being cancelled, once a step failed for good (e.g. out_of_stock: SKU-1).
    cancel_reason    text,
    reservation_id   text,
    authorization_id text,
    -- W3C traceparent of the request that created the order: the saga's calls continue its trace.
    traceparent      text,
    claimed_by       uuid,
    claimed_until    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The workers' claim: unfinished sagas by due time.
CREATE INDEX sagas_due_idx ON sagas (next_attempt_at) WHERE state IN ('RUNNING', 'COMPENSATING');

-- W3C traceparent of the change, published as a Kafka header so consumers continue the trace.
ALTER TABLE outbox_events ADD COLUMN traceparent text;
