-- intake: what the hot-topics analysis (热点研判) reads.
-- The appeals of a window of months, and the category each appeal was routed as
-- (read from its ct.order.dispatched events in the timeline: no copy of it is kept).

CREATE INDEX IF NOT EXISTS appeals_by_received_at ON appeals (received_at);
CREATE INDEX IF NOT EXISTS timeline_dispatched ON timeline (appeal_id, occurred_at DESC)
    WHERE subject = 'ct.order.dispatched';
