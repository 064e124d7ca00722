"""Configuration from environment variables (pydantic-settings), one class for all services.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("intake", "dispatch", "escalation", "notify")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    nats_url: str | None = Field(None, description="NATS server(s), comma separated. Unset: an embedded nats-server is started.")
    database_url: str | None = Field(None, description="PostgreSQL DSN. Unset: an embedded PostgreSQL is started.")
    sms_gateway_url: str | None = Field(None, description="SMS gateway endpoint (POST JSON {id, to, text}).")
    smtp_host: str = Field("127.0.0.1", description="SMTP server for e-mail.")
    smtp_port: int = Field(25, description="SMTP port.")
    smtp_sender: str = Field("coffeetime@example.gov.cn", description="From address of e-mails.")
    quiet_hours: str = Field("22:00-08:00", description="SMS quiet hours, Asia/Shanghai; empty turns them off.")
    district_config: str | None = Field(None, description="Path of the district configuration (units, routing).")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR.")
    http_host: str = Field("127.0.0.1", description="Address the services' HTTP servers bind.")
    intake_port: int = Field(8101, description="HTTP port of intake.")
    dispatch_port: int = Field(8102, description="HTTP port of dispatch.")
    escalation_port: int = Field(8103, description="HTTP port of escalation.")
    notify_port: int = Field(8104, description="HTTP port of notify.")
    db_pool_size: int = Field(8, description="Connections per service process.")
    batch_size: int = Field(200, description="Messages fetched per pull from JetStream.")
    max_deliver: int = Field(5, description="Deliveries of a failing message before it is dead-lettered.")
    ack_wait_s: float = Field(30.0, description="JetStream ack wait; above the slowest handler.")
    retry_backoff_s: str = Field("1,5,15,60", description="Delays between redeliveries of a failing message.")
    outbox_relay: bool = Field(True, description="Relay this process's outbox to NATS (off: another replica relays).")
    outbox_batch: int = Field(500, description="Outbox rows relayed per round.")
    rating_wait_days: float = Field(7.0, description="Days a reply waits for the enterprise's rating before the appeal closes as not rated.")
    scan_interval_s: float = Field(0.25, description="Escalation scanner period.")
    notify_http_concurrency: int = Field(
        16, ge=1, le=256, description="Notify: requests in flight per HTTP channel (SMS gateway, WeCom robots), "
                                      "and the size of that channel's own kept-alive connection pool.")
    duplicate_window_days: float = Field(
        30.0, description="Intake: an appeal of the same enterprise received within this many days may be repeated "
                          "(重复诉求并单); 0 turns duplicate merging off.")
    duplicate_min_similarity: float = Field(
        0.25, description="Intake: the text similarity (character-pair Jaccard, 0-1) from which an appeal is a likely "
                         "duplicate of an earlier one of the same enterprise and category.")

    # --- NATS credentials and streams (deploy/nats/nats.conf; README "Security") ---------------
    nats_user: str | None = Field(
        None, description="NATS user (deploy/nats/nats.conf); a user in NATS_URL (nats://user:pw@host) works too.")
    nats_password: SecretStr | None = Field(None, description="Password of NATS_USER.")
    nats_creds: str | None = Field(None, description="Path of a NATS .creds file (JWT + NKey), instead of a password.")
    nats_inbox_prefix: str | None = Field(
        None, description="Inbox prefix of replies and fetched messages; default _INBOX_<user> when a user is known "
                          "(nats.conf lets each user subscribe only to its own), else _INBOX.")
    stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of each stream at creation; start-up raises an existing stream to it, "
                                   "never lowers one an operator raised.")

    # --- HTTP access (README "Security": HTTP) -------------------------------------------------
    demo_mode: bool = Field(
        False, description="Accept the demo credentials (unit tokens token-<unit_code>, the demo read key and SMS "
                           "secret): the demo and the tests only. Without it a service refuses to start with them.")
    unit_tokens: str | None = Field(
        None, description="unit_code=sha256hex pairs (comma separated) replacing the district file's token_sha256; "
                          "unit_code= alone: no API token.")
    read_api_keys: str | None = Field(
        None, description="client=sha256hex pairs (comma separated): the keys that may read GET /appeals, /topics "
                          "(intake) and /notifications (notify), sent as X-API-Key. Unset: nobody (demo mode: the "
                          "demo key).")
    open311_api_keys: str | None = Field(
        None, description="Intake: client=sha256hex pairs (comma separated), the Open311 GeoReport v2 clients that may "
                          "POST requests and read their own, each sending its key as the api_key parameter. Unset: "
                          "every Open311 request call is refused (403); services stay public.")
    sms_inbound_secret: SecretStr | None = Field(
        None, description="Notify: the shared secret of the SMS gateway's HMAC-SHA256 signature of POST /sms/inbound. "
                          "Unset: every inbound SMS is refused (demo mode: the demo secret).")
    sms_inbound_window_s: float = Field(
        300.0, gt=0, le=3600, description="Notify: how far a signed /sms/inbound timestamp may lie from now, either "
                                          "way; its nonce is remembered twice as long.")

    # --- the web console (dispatch, /console; README "Console") --------------------------------
    console_session_hours: float = Field(
        8.0, gt=0, le=720, description="Console: hours a login lasts; then the unit's token is asked for again.")
    console_secure_cookie: bool = Field(
        False, description="Console: mark the session cookie Secure always (behind an https proxy that talks plain "
                           "HTTP to dispatch); without it, Secure whenever the request itself came over https.")
    console_intake_url: str | None = Field(
        None, description="Console: intake's HTTP address, for an order's timeline (GET /appeals/{id}). Unset: "
                          "http://HTTP_HOST:INTAKE_PORT.")
    console_escalation_url: str | None = Field(
        None, description="Console: escalation's HTTP address, for the month's ranking (GET /report). Unset: "
                          "http://HTTP_HOST:ESCALATION_PORT.")
    console_read_api_key: SecretStr | None = Field(
        None, description="Console: the read API key it sends intake (X-API-Key) for timelines. Unset: none (demo "
                          "mode: the demo read key); the timeline then shows what dispatch itself knows.")
    console_poll_s: float = Field(
        3.0, ge=0.5, le=60, description="Console: seconds between a page's checks for changed orders (htmx polling).")

    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` / ``NatsBroker``: the user, its password or creds, its inbox prefix."""
        options: dict[str, Any] = {}
        if self.nats_user:
            options["user"] = self.nats_user
        if self.nats_password is not None:
            options["password"] = self.nats_password.get_secret_value()
        if self.nats_creds:
            options["user_credentials"] = self.nats_creds
        prefix = self.nats_inbox_prefix or self._default_inbox_prefix()
        if prefix:
            options["inbox_prefix"] = prefix
        return options

    def _default_inbox_prefix(self) -> str | None:
        user = self.nats_user
        if not user and self.nats_url:
            user = urlsplit(self.nats_url.split(",")[0].strip()).username
        return f"_INBOX_{user}" if user else None

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def backoff(self) -> list[float]:
        return [float(x) for x in self.retry_backoff_s.split(",") if x.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
