-- The routing model: the appeals' texts, the lead unit's corrections (labelled examples), the versions trained.

-- The full content of each appeal dispatch started (appeals.summary is cut at 60 characters):
-- what a correction labels.
CREATE TABLE IF NOT EXISTS appeal_texts (
    appeal_id text PRIMARY KEY,
    content   text NOT NULL
);

-- One labelled example per correcting action (dispatch by hand, accepted return with a new unit,
-- redispatch), written in the action's own transaction. example_id orders them: examples are
-- inserted under a transaction-scoped advisory lock, so ids become visible in order and
-- "every example up to id N" names one training set for every replica.
CREATE TABLE IF NOT EXISTS routing_examples (
    example_id bigserial   PRIMARY KEY,
    key        text        NOT NULL UNIQUE,   -- <unit_code>:<action_id> of the action
    appeal_id  text,
    content    text        NOT NULL,
    unit_code  text        NOT NULL,          -- the unit a person chose
    source     text        NOT NULL,          -- dispatch, decide_return, redispatch
    actor      text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every model version a replica trained: <config hash>-<last example id>.
CREATE TABLE IF NOT EXISTS routing_versions (
    version         text        PRIMARY KEY,
    config_hash     text        NOT NULL,
    last_example_id bigint      NOT NULL,
    examples        int         NOT NULL,
    training_ms     real,
    trained_at      timestamptz NOT NULL DEFAULT now()
);

-- Which model version routed an order (NULL: a person chose the unit, or the rules alone).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS routing_version text;
