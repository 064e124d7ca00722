-- intake: the appeal record, the coffee events, and each appeal's timeline.

CREATE SEQUENCE IF NOT EXISTS appeal_number;

CREATE TABLE IF NOT EXISTS appeals (
    appeal_id        text PRIMARY KEY
                     DEFAULT 'CT-' || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD')
                          || '-' || lpad(nextval('appeal_number')::text, 6, '0'),
    channel          text        NOT NULL,
    source_id        text        NOT NULL,
    enterprise_name  text,
    enterprise_uscc  text,
    contact_name     text,
    contact_phone    text,
    content          text        NOT NULL,
    title            text,
    category_hint    text,
    address          text,
    kind             text        NOT NULL,
    urgent           boolean     NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL,
    proposal         jsonb,
    msg_id           text,
    registered_at    timestamptz NOT NULL DEFAULT now(),
    -- the same call published three times, under any Nats-Msg-Id, is one appeal
    CONSTRAINT appeals_once_per_source UNIQUE (channel, source_id)
);

CREATE TABLE IF NOT EXISTS coffee_events (
    event_id        text PRIMARY KEY,
    kind            text        NOT NULL,
    event_date      date        NOT NULL,
    organizer_unit  text        NOT NULL,
    theme           text,
    attendees       jsonb       NOT NULL DEFAULT '[]',
    items           jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- who, when and what, for every domain event about an appeal; one row per event id
CREATE TABLE IF NOT EXISTS timeline (
    event_id     text PRIMARY KEY,
    appeal_id    text        NOT NULL,
    subject      text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    actor        text        NOT NULL,
    what         text        NOT NULL,
    payload      jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_by_appeal ON timeline (appeal_id, occurred_at);
