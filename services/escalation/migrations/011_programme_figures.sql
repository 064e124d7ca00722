-- Programme figures (services/escalation/figures.py): the coffee events (from ct.in.event) and the appeals
-- raised at them (from ct.appeal.registered), as the headline figures count them. Intake keeps the records
-- themselves (intake.coffee_events); these are escalation's own copies of what it counts.

CREATE TABLE IF NOT EXISTS programme_events (
    event_id        text PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('main', 'sub')),
    event_date      date        NOT NULL,
    organizer_unit  text        NOT NULL,
    attendees       jsonb       NOT NULL DEFAULT '[]',   -- as sent: texts or {name, role, unit}
    enterprises     jsonb       NOT NULL DEFAULT '[]',   -- enterprise keys of the items (credit code, else name)
    items           integer     NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS programme_events_by_date ON programme_events (event_date);

CREATE TABLE IF NOT EXISTS programme_appeals (
    appeal_id       text PRIMARY KEY,
    event_id        text        NOT NULL,
    item_no         integer     NOT NULL,
    event_kind      text        NOT NULL,
    duplicate_of    text,
    registered_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS programme_appeals_by_event ON programme_appeals (event_id);
