-- dispatch: likely duplicates that follow their master (重复诉求并单). A follower has an
-- appeals row (status 'following') and no order; its registration is kept so that a split
-- routes it on its own. A split known before the registration leaves a row without it.

CREATE TABLE IF NOT EXISTS followers (
    appeal_id         text PRIMARY KEY,
    master_appeal_id  text        NOT NULL,
    similarity        real,
    registration      jsonb,                 -- the ct.appeal.registered event; null: the split came first
    replied_order_id  text,                  -- the master's order whose reply it was sent last
    replied_at        timestamptz,
    split_at          timestamptz,           -- split, or reopened on its own: it follows no more
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS followers_of_master ON followers (master_appeal_id) WHERE split_at IS NULL;
CREATE INDEX IF NOT EXISTS followers_awaiting_rating ON followers (replied_at)
    WHERE split_at IS NULL AND replied_at IS NOT NULL;
