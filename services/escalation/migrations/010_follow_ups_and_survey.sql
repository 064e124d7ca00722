-- Follow-up visits (抽查回访) and the third-party survey (第三方测评), counted in the monthly evaluation
-- beside the enterprises' own ratings (services/escalation/followups.py, survey.py).

-- One draw per month: its seed and share are recorded, so the same candidates and seed give the same appeals.
CREATE TABLE IF NOT EXISTS follow_up_draws (
    month       text PRIMARY KEY CHECK (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    draw_id     text        NOT NULL UNIQUE,
    seed        bigint      NOT NULL,
    share       double precision NOT NULL CHECK (share >= 0 AND share <= 1),
    candidates  integer     NOT NULL,            -- closed appeals of the month (reopened ones included)
    drawn_at    timestamptz NOT NULL,
    drawn_by    text        NOT NULL
);

CREATE TABLE IF NOT EXISTS follow_up_appeals (
    month       text        NOT NULL REFERENCES follow_up_draws (month),
    appeal_id   text        NOT NULL,
    reason      text        NOT NULL CHECK (reason IN ('closed', 'reopened')),
    PRIMARY KEY (month, appeal_id)
);
CREATE INDEX IF NOT EXISTS follow_up_appeals_by_appeal ON follow_up_appeals (appeal_id);

-- Each follow-up call's outcome, once per feedback id (a redelivery is the same row).
CREATE TABLE IF NOT EXISTS follow_ups (
    feedback_id   text PRIMARY KEY,
    appeal_id     text        NOT NULL,
    month         text,                          -- the draw the appeal is in (latest), NULL: not drawn
    outcome       text        NOT NULL CHECK (outcome IN ('rated', 'not_done', 'no_further_visit', 'no_rating_yet')),
    rating        text CHECK (rating IN ('satisfied', 'basically_satisfied', 'unsatisfied')),
    own_rating    text,                          -- the enterprise's own latest rating when the call arrived
    contradicts   boolean     NOT NULL DEFAULT false,
    comment       text,
    caller        text,
    received_at   timestamptz NOT NULL,
    CHECK ((outcome = 'rated') = (rating IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS follow_ups_by_month ON follow_ups (month, appeal_id, received_at);
CREATE INDEX IF NOT EXISTS follow_ups_by_appeal ON follow_ups (appeal_id, received_at);

-- A survey file imported for a month, once (the same file again is recognised by its digest).
CREATE TABLE IF NOT EXISTS survey_imports (
    import_id    text PRIMARY KEY,               -- SV-<month>-<first 16 hex of the digest>
    month        text        NOT NULL CHECK (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    sha256       text        NOT NULL,
    filename     text,
    rows         integer     NOT NULL,
    imported_at  timestamptz NOT NULL,
    imported_by  text        NOT NULL,
    UNIQUE (month, sha256)
);

-- One survey rating per appeal and month.
CREATE TABLE IF NOT EXISTS survey_ratings (
    month       text        NOT NULL,
    appeal_id   text        NOT NULL,
    import_id   text        NOT NULL REFERENCES survey_imports (import_id),
    line        integer     NOT NULL,
    rating      text        NOT NULL CHECK (rating IN ('satisfied', 'basically_satisfied', 'unsatisfied')),
    comment     text,
    surveyor    text        NOT NULL,
    PRIMARY KEY (month, appeal_id)
);
