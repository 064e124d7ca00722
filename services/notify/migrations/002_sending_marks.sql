-- notify: an attempt is logged BEFORE its send ('sending', committed before the message goes to its
-- channel), so after a crash or a database outage only the sends that were in flight are made again,
-- and each of those is known (and counted) as a resend.
--
-- outcome of a delivery_attempts row:
--   sending    the send was started under this claim and its outcome is not recorded (yet)
--   unknown    a later claim found it still 'sending': the worker died or lost the database mid-send
--   delivered, retried, failed   as before
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sending', 'unknown', 'delivered', 'retried', 'failed'));

-- the claims made before the current retry budget started: `coffeetime notify retry-failed` gives a
-- failed message a new budget, and only the sends cut short since then count towards giving it up
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS retry_from_claim integer NOT NULL DEFAULT 0;

-- operations look for the messages that failed for good, by channel and time
CREATE INDEX IF NOT EXISTS notifications_failed ON notifications (channel, failed_at) WHERE status = 'failed';
