-- The State Council schedules the district loaded (coffeetime calendar load, POST /calendar/years):
-- one row per year, the validated, normalised document (holidays with their dates, make-up
-- working days), written in one statement, so a year is there whole or not at all. Every
-- replica reads them (the work calendar consults them before chinese-calendar) and notices a
-- new or replaced year by the signature of (year, digest) of all rows.
CREATE TABLE IF NOT EXISTS calendar_years (
    year       integer     PRIMARY KEY CHECK (year BETWEEN 2000 AND 2100),
    document   jsonb       NOT NULL,
    digest     text        NOT NULL,
    source     text        NOT NULL DEFAULT '',
    loaded_at  timestamptz NOT NULL,
    loaded_by  text        NOT NULL
);

-- Every load, also of a schedule already there (outcome unchanged): who, when, what.
CREATE TABLE IF NOT EXISTS calendar_loads (
    load_id    bigserial   PRIMARY KEY,
    year       integer     NOT NULL,
    digest     text        NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('loaded', 'replaced', 'unchanged')),
    loaded_at  timestamptz NOT NULL,
    loaded_by  text        NOT NULL
);
