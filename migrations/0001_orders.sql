-- Core order data. PostgreSQL owns everything that must be consistent in one transaction:
-- the order, its lines, addresses and payment, and the idempotency key that created it.

CREATE TABLE orders (
    -- UUIDv7 from the service: time-ordered, so inserts stay at the right edge of the index.
    id             uuid        PRIMARY KEY,
    customer_id    text        NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    status         text        NOT NULL CHECK (status IN
                       ('PENDING', 'CONFIRMED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    status_reason  text,
    currency       char(3)     NOT NULL,
    -- Integer minor units; the CHECKs repeat the service's rules so no other writer breaks them.
    subtotal_minor bigint      NOT NULL CHECK (subtotal_minor >= 0),
    shipping_minor bigint      NOT NULL CHECK (shipping_minor >= 0),
    tax_minor      bigint      NOT NULL CHECK (tax_minor >= 0),
    total_minor    bigint      NOT NULL CHECK (total_minor = subtotal_minor + shipping_minor + tax_minor),
    version        bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Access patterns: a customer's orders newest first, orders in a status over time, and all
-- orders over time. Each ends in (created_at, id) so keyset pagination is an index range scan.
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx   ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_created_idx          ON orders (created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id         uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL CHECK (line_no >= 1),
    sku              text    NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    name             text    NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint  NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor bigint  NOT NULL CHECK (line_total_minor = quantity * unit_price_minor),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_addresses (
    order_id    uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind        text    NOT NULL CHECK (kind IN ('shipping', 'billing')),
    name        text    NOT NULL,
    line1       text    NOT NULL,
    line2       text,
    city        text    NOT NULL,
    region      text,
    postal_code text    NOT NULL,
    country     char(2) NOT NULL,
    PRIMARY KEY (order_id, kind)
);

CREATE TABLE payments (
    id           uuid        PRIMARY KEY,
    order_id     uuid        NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    method       text        NOT NULL CHECK (method IN ('card', 'bank_transfer', 'paypal', 'invoice')),
    status       text        NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'CAPTURED', 'VOIDED', 'FAILED')),
    amount_minor bigint      NOT NULL CHECK (amount_minor >= 0),
    currency     char(3)     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per Idempotency-Key. It is inserted first in the create transaction, so a
-- concurrent retry with the same key waits on the unique index until the first commits
-- (then replays its order) or rolls back (then creates). The order row comes later in the
-- same transaction, hence the deferred foreign key.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE
                             DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);
