"""Who may call the HTTP APIs: read API keys, the SMS gateway's signature, and the demo credentials.

- **Read API keys** (``READ_API_KEYS``, ``client=sha256hex`` pairs): a client sends its key as
  ``X-API-Key``; only the key's SHA-256 is configured, and every configured hash is compared in
  constant time (``hmac.compare_digest``), with no early exit.
- **Signed requests** (the SMS gateway's ``POST /sms/inbound``): ``X-Ct-Timestamp`` (Unix
  seconds), ``X-Ct-Nonce`` (16-64 of ``A-Z a-z 0-9 _ -``, new for every post) and
  ``X-Ct-Signature: sha256=<hex>``, the HMAC-SHA256, with the shared secret, of
  ``<timestamp>.<nonce>.`` followed by the raw body. :func:`signed_headers` makes them (every
  caller in this repository signs through it); :func:`signature_problem` checks them.
- **Demo credentials**: the unit tokens ``token-<unit_code>`` (the default district's hashes),
  :data:`DEMO_READ_KEY` and :data:`DEMO_SMS_SECRET`. Only ``DEMO_MODE`` accepts them;
  :func:`refuse_demo_credentials` stops a service started with any of them otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Generator

import httpx

from shared.district import load_district, parse_token_hashes, token_sha256
from shared.settings import Settings

DEMO_READ_CLIENT = "demo"
DEMO_READ_KEY = "demo-read-key"
"""The read API key demo mode accepts when ``READ_API_KEYS`` is unset (client ``demo``)."""
DEMO_SMS_SECRET = "demo-sms-inbound-secret"
"""The SMS gateway secret demo mode uses when ``SMS_INBOUND_SECRET`` is unset."""

log = logging.getLogger("coffeetime.access")

API_KEY_HEADER = "X-API-Key"
TIMESTAMP_HEADER = "X-Ct-Timestamp"
NONCE_HEADER = "X-Ct-Nonce"
SIGNATURE_HEADER = "X-Ct-Signature"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class DemoCredentialsRefused(RuntimeError):
    """A service outside demo mode was given the demo credentials."""


# --- read API keys ------------------------------------------------------------------------

class ReadKeys:
    """The read API keys a service accepts: client name → SHA-256 hex of its key."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes

    @classmethod
    def of(cls, settings: Settings) -> ReadKeys:
        """``READ_API_KEYS``; in demo mode without it, the demo key (client ``demo``)."""
        if settings.read_api_keys:
            return cls({name: digest for name, digest in parse_token_hashes(
                settings.read_api_keys, "READ_API_KEYS").items() if digest})
        return cls({DEMO_READ_CLIENT: token_sha256(DEMO_READ_KEY)} if settings.demo_mode else {})

    def client_of(self, key: str) -> str | None:
        """The client whose key ``key`` is, or None; every hash is compared, in constant time."""
        digest = token_sha256(key)
        found = None
        for client, expected in self.hashes.items():
            if hmac.compare_digest(digest, expected) and found is None:
                found = client
        return found


# --- signed requests (the SMS gateway) ------------------------------------------------------

def sms_inbound_secret(settings: Settings) -> str | None:
    """The SMS gateway's shared secret; in demo mode without one, :data:`DEMO_SMS_SECRET`."""
    if settings.sms_inbound_secret is not None and settings.sms_inbound_secret.get_secret_value():
        return settings.sms_inbound_secret.get_secret_value()
    return DEMO_SMS_SECRET if settings.demo_mode else None


def signature(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``<timestamp>.<nonce>.`` + ``body`` with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{nonce}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that sign ``body`` (the exact bytes posted): now, a new nonce, the signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    return {TIMESTAMP_HEADER: ts, NONCE_HEADER: nonce, SIGNATURE_HEADER: signature(secret, ts, nonce, body)}


class GatewaySignature(httpx.Auth):
    """httpx auth that signs each request's body as the SMS gateway does (:func:`signed_headers`)."""

    requires_request_body = True

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(signed_headers(self.secret, request.content))
        yield request


def signature_problem(secret: str, body: bytes, timestamp: str | None, nonce: str | None, given: str | None,
                      now: float, window_s: float) -> str | None:
    """Why a signed request is refused (``missing_signature``, ``bad_signature``, ``stale``), or None.

    The signature is checked first (constant time), then the timestamp's distance from ``now``;
    the caller then refuses a nonce it has seen (``replayed``).
    """
    if not (timestamp and nonce and given):
        return "missing_signature"
    if not (_TIMESTAMP.match(timestamp) and _NONCE.match(nonce)):
        return "bad_signature"
    if not hmac.compare_digest(signature(secret, timestamp, nonce, body).encode(), given.encode()):
        return "bad_signature"
    if abs(now - int(timestamp)) > window_s:
        return "stale"
    return None


# --- demo credentials ---------------------------------------------------------------------------

def demo_credentials(settings: Settings) -> list[str]:
    """The demo credentials ``settings`` would let in, each named (empty: none)."""
    found = []
    district = load_district(settings.district_config, settings.unit_tokens)
    demo_units = [u.unit_code for u in district.units if u.has_demo_token]
    if demo_units:
        shown = ", ".join(demo_units[:5]) + (f" and {len(demo_units) - 5} more" if len(demo_units) > 5 else "")
        found.append(f"the demo unit tokens (token-<unit_code>) of {shown}")
    if settings.read_api_keys and ReadKeys.of(settings).client_of(DEMO_READ_KEY):
        found.append("the demo read API key in READ_API_KEYS")
    secret = settings.sms_inbound_secret
    if secret is not None and hmac.compare_digest(secret.get_secret_value().encode(), DEMO_SMS_SECRET.encode()):
        found.append("the demo SMS_INBOUND_SECRET")
    return found


def refuse_demo_credentials(settings: Settings) -> None:
    """Stop a service outside demo mode that would accept a demo credential, saying which and what to do."""
    if settings.demo_mode:
        return
    found = demo_credentials(settings)
    if found:
        raise DemoCredentialsRefused(
            "refusing to start with " + "; ".join(found) + ". Give real hashes (UNIT_TOKENS=unit_code=sha256hex,... "
            "or token_sha256 in DISTRICT_CONFIG; READ_API_KEYS; SMS_INBOUND_SECRET), or set DEMO_MODE=1 for the "
            "demo and tests only (README: Security)")


def check_at_start(settings: Settings, service: str) -> None:
    """Start-up: refuse the demo credentials outside demo mode; warn of an HTTP door nobody can open."""
    refuse_demo_credentials(settings)
    if service in ("intake", "notify") and not ReadKeys.of(settings).hashes:
        log.warning("READ_API_KEYS is not set: every read of appeals and notifications is refused (401)",
                    extra={"service_name": service})
    if service == "notify" and sms_inbound_secret(settings) is None:
        log.warning("SMS_INBOUND_SECRET is not set: every POST /sms/inbound is refused (401)",
                    extra={"service_name": service})
