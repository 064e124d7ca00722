-- The steps heard once per appeal (district leader, supervision office): however many
-- co-handling orders (协办) of the appeal are late, the level is announced once per
-- appeal and reopening round (重办). The row is inserted in the transaction that
-- stages the event and marks the order's step fired, so a redelivery, a second
-- replica or a restart after kill -9 finds it and announces nothing twice; the steps
-- of the appeal's other orders that reach the level later are marked fired with
-- this event_id (recorded, not announced).
CREATE TABLE IF NOT EXISTS appeal_escalations (
    appeal_id    text        NOT NULL,
    round        integer     NOT NULL,   -- reopen_count of the order whose step fired first
    level        text        NOT NULL CHECK (level IN ('district_leader', 'supervision')),
    event_id     text        NOT NULL,   -- the ct.appeal.escalated staged
    late_orders  jsonb       NOT NULL,   -- the orders it named (contract LateOrder)
    fired_at     timestamptz NOT NULL,
    fired_by     text        NOT NULL,
    CONSTRAINT appeal_escalations_once PRIMARY KEY (appeal_id, round, level)
);
