-- intake: the requests Open311 GeoReport v2 clients posted (services/intake/open311.py).
-- Each is an appeal of the app channel (source id open311:<client>:<key>); this row keeps what
-- GeoReport says beside it (the client, the service code, the location, the e-mail), written in
-- the appeal's own transaction. A client lists its own requests, newest first.

CREATE TABLE IF NOT EXISTS open311_requests (
    appeal_id       text PRIMARY KEY REFERENCES appeals (appeal_id),
    client          text        NOT NULL,
    request_key     text        NOT NULL,
    service_code    text        NOT NULL,
    lat             double precision,
    long            double precision,
    address_string  text,
    email           text,
    device_id       text,
    account_id      text,
    media_url       text,
    requested_at    timestamptz NOT NULL,
    CONSTRAINT open311_once_per_client_request UNIQUE (client, request_key)
);
CREATE INDEX IF NOT EXISTS open311_by_client ON open311_requests (client, requested_at DESC, appeal_id DESC);
