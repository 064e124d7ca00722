-- The transactional outbox and the inbox of handled messages, in every service's schema.

-- Events written in the same transaction as the state change that caused them;
-- the relay publishes each to JetStream with Nats-Msg-Id = id, then deletes it.
CREATE TABLE IF NOT EXISTS outbox (
    seq         bigserial PRIMARY KEY,
    id          text        NOT NULL UNIQUE,
    subject     text        NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Inbound messages already handled, by (consumer, key): a redelivery finds its key here
-- and does nothing twice. The key is the sender's own id, not the Nats-Msg-Id alone.
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    key         text        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, key)
);
