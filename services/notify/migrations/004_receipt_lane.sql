-- notify: the delivery workers' claims (issue 12). Each channel has two workers: the receipt lane
-- claims receipts only, so a round of liaison messages in flight never delays an enterprise's
-- receipt; the other claims every message, receipts first. Both read one index in claim order:
-- receipts first, then urgent appeals' messages, then each by when it became sendable (its retry
-- time or the end of quiet hours). So a round reads about as many rows as it claims however many
-- are pending (the index on next_attempt_at alone made every round read and sort every due row of
-- its channel: thousands at full load), and there is no second index for the planner to choose
-- wrongly with stale statistics (a receipt claim planned on an index of every pending message read
-- them all to find its receipts).
CREATE INDEX IF NOT EXISTS notifications_claim
    ON notifications (channel, (template_kind = 'receipt') DESC, urgent DESC, (greatest(next_attempt_at, not_before)))
    WHERE status = 'pending';
DROP INDEX IF EXISTS notifications_due;
-- The attempts in flight or cut short ('sending': at most the workers' concurrency per channel and lane;
-- 'unknown': only after a crash or an outage): a claim counts a message's sends cut short, the sending
-- marks and the recordings look up its earlier marks there, never in the whole delivery log.
CREATE INDEX IF NOT EXISTS delivery_attempts_open ON delivery_attempts (notification_id, attempt)
    WHERE outcome IN ('sending', 'unknown');
