-- notify: the nonces of signed POST /sms/inbound requests (shared/access.py), so that a request
-- replayed within the replay window (SMS_INBOUND_WINDOW_S) is refused with 409. A nonce is kept
-- while its timestamp could still pass the window; older ones are purged as new ones come.
CREATE TABLE IF NOT EXISTS inbound_nonces (
    nonce        text        PRIMARY KEY,
    signed_at    timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inbound_nonces_signed_at ON inbound_nonces (signed_at);
