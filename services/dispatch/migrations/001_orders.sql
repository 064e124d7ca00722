-- dispatch: appeals as dispatch sees them, and their work orders.

CREATE TABLE IF NOT EXISTS appeals (
    appeal_id       text PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    category        text        NOT NULL,
    deadline_days   int         NOT NULL,
    sign_hours      real        NOT NULL,
    status          text        NOT NULL,          -- queued, in_progress, closed
    source_ref      text        NOT NULL DEFAULT '',
    correlation_id  text        NOT NULL DEFAULT '',
    urgent          boolean     NOT NULL DEFAULT false,
    summary         text        NOT NULL DEFAULT '',
    enterprise_name text,
    contact_phone   text,
    return_count    int         NOT NULL DEFAULT 0,
    orders_issued   int         NOT NULL DEFAULT 0,
    unit_codes      text[]      NOT NULL DEFAULT '{}',
    routing         jsonb,                          -- candidates and reasons, kept with the appeal
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS appeals_queued ON appeals (created_at) WHERE status = 'queued';

CREATE TABLE IF NOT EXISTS orders (
    order_id                 text PRIMARY KEY,
    appeal_id                text        NOT NULL REFERENCES appeals (appeal_id),
    unit_code                text        NOT NULL,
    role                     text        NOT NULL,  -- lead, co
    status                   text        NOT NULL,
    reopen_count             int         NOT NULL DEFAULT 0,
    dispatched_at            timestamptz,
    signed_at                timestamptz,
    replied_at               timestamptz,
    closed_at                timestamptz,
    pending_extension_days   int,
    pending_extension_reason text,
    extension_days_granted   int         NOT NULL DEFAULT 0,
    escalated                boolean     NOT NULL DEFAULT false,
    return_reason            text,
    reply                    text,
    resolved                 boolean,
    replaces_order_id        text,
    reasons                  jsonb       NOT NULL DEFAULT '[]',
    due_at                   timestamptz,           -- the handling deadline, from ct.deadline.set
    sign_due_at              timestamptz,           -- the sign-for deadline, from ct.deadline.set
    escalation_level         text,                  -- the highest step reached, from ct.appeal.escalated
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_by_unit ON orders (unit_code, status);
CREATE INDEX IF NOT EXISTS orders_by_appeal ON orders (appeal_id);
-- replied lead orders waiting for a rating: the not-rated sweep reads only these
CREATE INDEX IF NOT EXISTS orders_awaiting_rating ON orders (replied_at) WHERE status = 'replied' AND role = 'lead';
