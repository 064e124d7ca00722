-- notify: the delivery workers' claim (issue 12). A claim takes the first due rows in claim order
-- (urgent appeals' messages first, then by when each became sendable: its retry time or the end of
-- quiet hours) straight from an index in that order, so a round reads about as many rows as it
-- claims however many are pending (the index on next_attempt_at alone made every round read and
-- sort every due row of its channel: thousands at full load).
CREATE INDEX IF NOT EXISTS notifications_claim
    ON notifications (channel, urgent DESC, (greatest(next_attempt_at, not_before)))
    WHERE status = 'pending';
-- The receipt lane: each channel that carries receipts has a second delivery worker that claims
-- receipts only, so a round of liaison messages in flight never delays an enterprise's receipt.
CREATE INDEX IF NOT EXISTS notifications_claim_receipts
    ON notifications (channel, urgent DESC, (greatest(next_attempt_at, not_before)))
    WHERE status = 'pending' AND template_kind = 'receipt';
DROP INDEX IF EXISTS notifications_due;
