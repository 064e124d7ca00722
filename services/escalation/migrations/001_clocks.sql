-- escalation: what is known of every work order, its ladder of planned firings,
-- the appeals' closures and the ratings the monthly evaluation counts.
--
-- Events of one order arrive in any order, so every fact is nullable and merged
-- (earliest stop time, largest extension) by services/escalation/domain.py.

-- One row per work order, upserted by whichever of its events arrives first.
CREATE TABLE IF NOT EXISTS orders (
    order_id                text PRIMARY KEY,
    appeal_id               text        NOT NULL,
    unit_code               text        NOT NULL,
    unit                    text        NOT NULL DEFAULT '',
    role                    text,
    category                text,
    urgent                  boolean     NOT NULL DEFAULT false,
    summary                 text        NOT NULL DEFAULT '',
    source_ref              text        NOT NULL DEFAULT '',
    correlation_id          text        NOT NULL DEFAULT '',
    -- from ct.order.dispatched (NULL until it arrived)
    received_at             timestamptz,
    dispatched_at           timestamptz,
    deadline_days           integer,
    sign_hours              double precision,
    policy                  jsonb,              -- the escalation policy snapshot the ladder follows
    reopen_count            integer     NOT NULL DEFAULT 0,
    extension_days          integer     NOT NULL DEFAULT 0,   -- the largest total granted
    -- the clocks' deadlines, and the last ones published on ct.deadline.set
    sign_due                timestamptz,
    handling_due            timestamptz,
    sign_due_published      timestamptz,
    handling_due_published  timestamptz,
    -- stop facts and other facts: the earliest time each happened
    signed_at               timestamptz,
    returned_at             timestamptz,
    return_accepted_at      timestamptz,
    replied_at              timestamptz,
    reopened_at             timestamptz,
    difficult_at            timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_by_appeal ON orders (appeal_id);
CREATE INDEX IF NOT EXISTS orders_by_dispatch ON orders (dispatched_at);
CREATE INDEX IF NOT EXISTS orders_by_handling_due ON orders (handling_due);

-- ct.appeal.closed and ct.appeal.merged: they stop the clocks of the appeal's orders
-- dispatched before them. One row per event.
CREATE TABLE IF NOT EXISTS closures (
    event_id    text PRIMARY KEY,
    appeal_id   text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('closed', 'merged')),
    closed_at   timestamptz NOT NULL,
    outcome     text
);
CREATE INDEX IF NOT EXISTS closures_by_appeal ON closures (appeal_id, closed_at);

-- Ratings counted for the units: satisfied / basically satisfied from ct.appeal.closed
-- (for each unit that held an order), unsatisfied from ct.appeal.reopened (重办).
CREATE TABLE IF NOT EXISTS ratings (
    event_id    text        NOT NULL,
    unit_code   text        NOT NULL,
    appeal_id   text        NOT NULL,
    rating      text        NOT NULL CHECK (rating IN ('satisfied', 'basically_satisfied', 'unsatisfied')),
    source      text        NOT NULL CHECK (source IN ('closed', 'reopened')),
    rated_at    timestamptz NOT NULL,
    PRIMARY KEY (event_id, unit_code)
);
CREATE INDEX IF NOT EXISTS ratings_by_time ON ratings (rated_at);

-- One row per planned step of a clock's ladder (and per unit's escalation request).
-- A step fires once: (order_id, step_key) is unique and fired_at is set in the
-- transaction that stages its event. Steps that no longer apply get cancelled_at.
CREATE TABLE IF NOT EXISTS firings (
    firing_id     bigserial PRIMARY KEY,
    order_id      text        NOT NULL,
    appeal_id     text        NOT NULL,
    unit_code     text        NOT NULL,
    clock         text        NOT NULL CHECK (clock IN ('sign_for', 'handling')),
    level         text        NOT NULL,
    step_key      text        NOT NULL,   -- domain Firing.key (clock:level:due_at), or 'difficult'
    due_at        timestamptz,
    fire_at       timestamptz NOT NULL,
    planned_at    timestamptz NOT NULL,
    fired_at      timestamptz,
    cancelled_at  timestamptz,
    fired_by      text,
    event_id      text,
    payload       jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT firings_once UNIQUE (order_id, step_key)
);
-- The scanner's index: only the steps still waiting to fire, so its cost follows
-- the due rows, not the history nor the open orders far from their steps.
CREATE INDEX IF NOT EXISTS firings_pending ON firings (fire_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
-- Public notices (通报) counted per unit and month.
CREATE INDEX IF NOT EXISTS firings_fired_by_level ON firings (level, fired_at) WHERE fired_at IS NOT NULL;
