-- dispatch: the web console's logins (services/dispatch/console/sessions.py). The cookie holds a random
-- 256-bit session id; only its SHA-256 is stored, so a copy of this table opens no session. Each login
-- has its own CSRF token (every form and htmx request sends it) and an absolute expiry; logout deletes
-- the row, and expired rows are deleted as new logins come.

CREATE TABLE IF NOT EXISTS console_sessions (
    session_sha256 text        PRIMARY KEY,
    unit_code      text        NOT NULL,
    actor          text        NOT NULL,
    csrf_token     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
