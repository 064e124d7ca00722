"""Console logins: a unit's token exchanged for a session cookie, kept in PostgreSQL (``dispatch.console_sessions``).

- The token is checked exactly as the API checks a bearer token
  (:func:`shared.district.unit_of_token`: the SHA-256 of the token against each
  unit's, in constant time; the demo tokens only in demo mode).
- The cookie carries a random 256-bit session id (``secrets.token_urlsafe(32)``);
  the table keeps only its SHA-256, so neither a leaked table nor a guessed id
  opens a session. It is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``,
  and ``Secure`` when the request came over https or ``CONSOLE_SECURE_COOKIE``.
- A session lasts ``CONSOLE_SESSION_HOURS`` from login (absolute, not sliding);
  past it every page asks for the token again. Logout deletes the row.
- Each session has its own CSRF token, in every form (``csrf_token``) and in
  every htmx request (``X-CSRF-Token``, from ``hx-headers`` on the page body);
  every POST compares it with the session's (constant time). The login form,
  before any session, uses a double-submit token: a random value both in a
  cookie and in the form. SameSite=Strict alone would already keep another
  site's form from carrying the cookie; the token does not rely on the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

COOKIE = "ct_console"
LOGIN_COOKIE = "ct_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    """One login: who (the unit and the person who typed their name), its CSRF token, until when."""

    unit_code: str
    actor: str
    csrf_token: str
    expires_at: datetime


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    """A random token for a session id, a CSRF token or a login form."""
    return secrets.token_urlsafe(32)


def same(given: str | None, expected: str | None) -> bool:
    """Whether a presented token is the expected one (constant time; a missing one never is)."""
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """The console's sessions in dispatch's schema (the service's pool)."""

    def __init__(self, pool: asyncpg.Pool, hours: float) -> None:
        self.pool = pool
        self.lifetime = timedelta(hours=hours)

    async def open(self, unit_code: str, actor: str, now: datetime) -> tuple[str, ConsoleSession]:
        """A new session for ``unit_code``; its id (for the cookie only) and what is stored. Purges expired ones."""
        session_id = new_token()
        session = ConsoleSession(unit_code, actor, new_token(), now + self.lifetime)
        async with self.pool.acquire() as conn:
            await conn.execute("DELETE FROM console_sessions WHERE expires_at <= $1", now)
            await conn.execute(
                "INSERT INTO console_sessions (session_sha256, unit_code, actor, csrf_token, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)", _digest(session_id), unit_code, actor, session.csrf_token, now,
                session.expires_at)
        return session_id, session

    async def find(self, session_id: str | None, now: datetime) -> ConsoleSession | None:
        """The live session of a cookie's id, or None (no cookie, unknown, expired)."""
        if not session_id or len(session_id) > 100:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT unit_code, actor, csrf_token, expires_at FROM console_sessions "
                "WHERE session_sha256 = $1 AND expires_at > $2", _digest(session_id), now)
        return ConsoleSession(**dict(row)) if row else None

    async def close(self, session_id: str | None) -> None:
        """Logout: the session is gone (its cookie opens nothing any more)."""
        if session_id:
            async with self.pool.acquire() as conn:
                await conn.execute("DELETE FROM console_sessions WHERE session_sha256 = $1", _digest(session_id))
