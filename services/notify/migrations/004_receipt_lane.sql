-- notify: the receipt lane (issue 12). Each channel that carries receipts has a second delivery
-- worker that claims only receipts, so a round of liaison messages in flight never delays an
-- enterprise's receipt; its claim reads this index of due receipts alone.
CREATE INDEX IF NOT EXISTS notifications_due_receipts ON notifications (channel, next_attempt_at)
    WHERE status = 'pending' AND template_kind = 'receipt';
