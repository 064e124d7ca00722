-- notify: the enterprise contacts, events waiting for them, the notifications and their
-- delivery log, and the SMS replies received.

-- The enterprise contact of each appeal, from ct.appeal.registered: later events do not carry it.
CREATE TABLE IF NOT EXISTS appeal_contacts (
    appeal_id        text PRIMARY KEY,
    name             text,
    phone            text,
    lang             text        NOT NULL DEFAULT 'zh' CHECK (lang IN ('zh', 'en')),
    enterprise_name  text,
    category_hint    text,
    urgent           boolean     NOT NULL DEFAULT false,
    event_id         text        NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now()
);

-- Events that need the contact but arrived before ct.appeal.registered; planned when it comes
-- (or, after a while, without it). One row per event id: a redelivery waits once.
CREATE TABLE IF NOT EXISTS waiting_events (
    event_id       text PRIMARY KEY,
    appeal_id      text        NOT NULL,
    subject        text        NOT NULL,
    payload        jsonb       NOT NULL,
    waiting_since  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS waiting_events_by_appeal ON waiting_events (appeal_id);
CREATE INDEX IF NOT EXISTS waiting_events_by_age ON waiting_events (waiting_since);

-- One row per message: (cause event, address, channel) hashed into notification_id, so a
-- redelivered event plans nothing twice. The delivery workers claim due pending rows.
CREATE TABLE IF NOT EXISTS notifications (
    notification_id  text PRIMARY KEY,
    cause_event_id   text        NOT NULL,
    cause_subject    text        NOT NULL,
    correlation_id   text        NOT NULL DEFAULT '',
    appeal_id        text,
    channel          text        NOT NULL CHECK (channel IN ('sms', 'email', 'wecom')),
    address          text        NOT NULL,
    recipient_role   text        NOT NULL,
    recipient_name   text        NOT NULL DEFAULT '',
    template         text        NOT NULL,
    template_kind    text        NOT NULL,
    lang             text        NOT NULL,
    text             text        NOT NULL,
    subject          text,
    not_before       timestamptz NOT NULL,
    urgent           boolean     NOT NULL DEFAULT false,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,   -- attempts whose outcome was recorded
    claims           integer     NOT NULL DEFAULT 0,   -- times a worker took the row: the fencing token
    next_attempt_at  timestamptz NOT NULL,
    locked_until     timestamptz,                      -- the lease of the worker sending it now
    last_error       text,
    delivered_at     timestamptz,
    failed_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- the workers' claim reads only pending rows, in due order, per channel
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_by_appeal ON notifications (appeal_id, created_at);
-- an SMS reply is matched to the latest rating invitation sent to its phone
CREATE INDEX IF NOT EXISTS notifications_rating_invitations ON notifications (address, delivered_at DESC)
    WHERE channel = 'sms' AND template_kind = 'rating_invitation' AND status = 'delivered';

-- Every attempt, numbered by its claim (a gap means an attempt cut short by a crash).
CREATE TABLE IF NOT EXISTS delivery_attempts (
    notification_id  text        NOT NULL REFERENCES notifications (notification_id) ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    at               timestamptz NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN ('delivered', 'retried', 'failed')),
    error            text,
    duration_ms      integer     NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);

-- SMS replies from the gateway, once per gateway message id (the inbox of POST /sms/inbound).
CREATE TABLE IF NOT EXISTS inbound_sms (
    message_id   text PRIMARY KEY,
    phone        text        NOT NULL,
    text         text        NOT NULL,
    received_at  timestamptz,
    status_code  integer     NOT NULL,
    accepted     boolean     NOT NULL,
    reason       text,
    appeal_id    text,
    rating       text,
    feedback_id  text,
    handled_at   timestamptz NOT NULL DEFAULT now()
);
