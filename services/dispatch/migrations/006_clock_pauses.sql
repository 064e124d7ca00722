-- dispatch: pausing a handling clock while the unit waits for the enterprise (待补充材料).
-- paused_at / pause_reason: the open pause, for the units' and the lead unit's lists;
-- pauses: every pause of the appeal's handling clock this order knows (its own and the ones
-- of the orders it replaces), as the contract's ClockPause, carried to a re-dispatched order.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS paused_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS pause_reason text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS pauses jsonb NOT NULL DEFAULT '[]';
CREATE INDEX IF NOT EXISTS orders_paused ON orders (paused_at) WHERE paused_at IS NOT NULL;
-- a re-dispatched order's own clock (escalation's `unit` clock on ct.deadline.set: from its sign-for)
ALTER TABLE orders ADD COLUMN IF NOT EXISTS unit_due_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS unit_due_set_at timestamptz;
