-- notify: the delivery workers' claims (issue 12). Each channel has two workers: the receipt lane
-- claims receipts only, the other every other message, so a round of liaison messages in flight
-- never delays an enterprise's receipt. Each claim takes the first due rows in claim order (urgent
-- appeals' messages first, then by when each became sendable: its retry time or the end of quiet
-- hours) straight from its own index in that order, so a round reads about as many rows as it
-- claims however many are pending (the index on next_attempt_at alone made every round read and
-- sort every due row of its channel: thousands at full load). The two predicates are disjoint, so
-- neither claim can be planned on the other's index.
CREATE INDEX IF NOT EXISTS notifications_claim
    ON notifications (channel, urgent DESC, (greatest(next_attempt_at, not_before)))
    WHERE status = 'pending' AND template_kind <> 'receipt';
CREATE INDEX IF NOT EXISTS notifications_claim_receipts
    ON notifications (channel, urgent DESC, (greatest(next_attempt_at, not_before)))
    WHERE status = 'pending' AND template_kind = 'receipt';
DROP INDEX IF EXISTS notifications_due;
-- The attempts in flight or cut short ('sending': at most the workers' concurrency per channel and lane;
-- 'unknown': only after a crash or an outage): a claim counts a message's sends cut short, the sending
-- marks and the recordings look up its earlier marks there, never in the whole delivery log.
CREATE INDEX IF NOT EXISTS delivery_attempts_open ON delivery_attempts (notification_id, attempt)
    WHERE outcome IN ('sending', 'unknown');
