-- escalation: paused clocks (待补充材料) and a re-dispatched order's own clock.
--
-- pauses: the order's ClockPause list (its own, from ct.order.paused / ct.order.resumed, and the
-- ones of the orders it replaces, from ct.order.dispatched): data on the clock, kept through a
-- return, a redispatch, a category or a policy change. replaces_order_id: a re-dispatched order,
-- whose unit's own clock (unit_due) starts at its sign-for; the unit's on-time rate counts by it.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS pauses jsonb NOT NULL DEFAULT '[]';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS replaces_order_id text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS unit_due timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS unit_due_published timestamptz;
