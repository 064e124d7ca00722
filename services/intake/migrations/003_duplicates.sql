-- intake: duplicate appeals (重复诉求并单). A duplicate names the master it follows
-- and how similar their texts are; a split keeps the link for the record and says when.
-- The candidates of a batch are read in one query by credit code or phone and received_at.

ALTER TABLE appeals ADD COLUMN IF NOT EXISTS master_appeal_id text;
ALTER TABLE appeals ADD COLUMN IF NOT EXISTS similarity real;
ALTER TABLE appeals ADD COLUMN IF NOT EXISTS split_at timestamptz;
ALTER TABLE appeals ADD COLUMN IF NOT EXISTS split_by text;

CREATE INDEX IF NOT EXISTS appeals_by_uscc ON appeals (enterprise_uscc, received_at)
    WHERE enterprise_uscc IS NOT NULL;
CREATE INDEX IF NOT EXISTS appeals_by_phone ON appeals (contact_phone, received_at)
    WHERE contact_phone IS NOT NULL;
CREATE INDEX IF NOT EXISTS appeals_by_master ON appeals (master_appeal_id)
    WHERE master_appeal_id IS NOT NULL;
