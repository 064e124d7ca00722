-- ct.deadline.set may arrive out of order: keep when each deadline was set, apply only newer ones.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS due_set_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS sign_due_set_at timestamptz;
