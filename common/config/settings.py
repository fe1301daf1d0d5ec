"""Process settings, one typed model. Supplied to the infrastructure context by whoever starts
the process; every field can also come from the environment or a mounted secret file.

Precedence, highest first: what the starter passes (the command line, the mesh configuration),
then `OGPGY_<FIELD>` environment variables (`OGPGY_PORT=7103`; a mapping such as `addresses` as
JSON), then files in `OGPGY_SECRETS_DIR` named like those variables (a Kubernetes Secret mounted as
a volume: `OGPGY_ADMIN_PASSWORD`, `OGPGY_POSTGRES_DSN`), then the defaults below. `ogpgy config`
prints the result with the secrets redacted.
"""

from __future__ import annotations

import os
import re
from datetime import date, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FIELDS = ("admin_password", "postgres_dsn", "redis_url", "smtp_url")  # may carry a password
REDACTED = "***"
# About 10,000 US dollars in each currency the bank keeps, in minor units.
# An operator's refund or compensation moves money the bank's processes did not: a tenth of a
# loan's amount (below the largest single payment the fraud screen lets through, so it can apply).
OPERATOR_FOUR_EYES_ABOVE_MINOR = {"EUR": 100_000, "USD": 100_000, "GBP": 80_000, "CHF": 90_000, "SEK": 1_000_000, "JPY": 150_000}
FOUR_EYES_ABOVE_MINOR = {"EUR": 1_000_000, "USD": 1_000_000, "GBP": 800_000, "CHF": 900_000, "SEK": 10_000_000, "JPY": 1_500_000}


# Each currency's business calendar: the market whose closing days it keeps.
BUSINESS_CALENDARS = {"EUR": "ECB", "USD": "NYSE", "GBP": "XLON", "CHF": "XSWX", "SEK": "SE", "JPY": "JPX"}


def _secrets_dir() -> str | None:
    folder = os.environ.get("OGPGY_SECRETS_DIR", "")
    return folder if folder and Path(folder).is_dir() else None


def redact(value: str) -> str:
    """A secret as `ogpgy config` shows it: a URL keeps all but its password, a libpq DSN all but
    its password=..., anything else is hidden whole."""
    if not value:
        return value
    if "://" in value:
        parts = urlsplit(value)
        if parts.password is None:
            return value
        netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    if "=" in value:
        return re.sub(r"password=\S+", f"password={REDACTED}", value)
    return REDACTED


class Settings(BaseSettings):
    """Where data lives and where contexts listen.

    `addresses` maps a context name to the gRPC target that reaches it; in embedded mode every
    context maps to the one local server.
    """

    model_config = SettingsConfigDict(env_prefix="OGPGY_", frozen=True, extra="forbid", secrets_dir=_secrets_dir())

    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int | None = None  # the Connect and gRPC-Web port (0: a free one); None: no HTTP port
    health_port: int | None = None  # a plaintext port serving gRPC health alone, for probes without certificates; None: none
    http_max_body_bytes: int = 4 * 1024 * 1024  # a request message over HTTP, as sent and once inflated
    http_header_timeout_seconds: float = 10.0  # a request's head must arrive in this time (slowloris)
    http_body_timeout_seconds: float = 30.0  # and its body in this time once its head has
    http_idle_timeout_seconds: int = 5  # a kept-alive HTTP connection with no request is closed
    http_max_connections: int = 1000  # the HTTP port's connections: idle ones give way, beyond busy ones 503
    http_connections_per_address: int = 64  # one client address's (IPv6: its /64's) HTTP connections; the next is closed
    addresses: dict[str, str] = Field(default_factory=dict)
    instance_name: str = "embedded"  # this process among the replicas: the owner of what it leases
    colocated_calls: bool = True  # contexts of this process call each other in-process (no socket)
    database: str = "sqlite"  # or "postgres": one schema per context in postgres_dsn
    postgres_dsn: str = Field(default="", repr=False)  # the secrets are left out of repr (and so of any log or traceback)
    # A PostgreSQL server that may lose commits it acknowledged (fsync, full_page_writes or
    # synchronous_commit off) is refused at start; True accepts it, with a WARNING at start: for
    # throw-away clusters (the tests'), never for a bank whose answers must hold.
    allow_volatile_database: bool = False
    redis_url: str = Field(default="", repr=False)  # empty: in-memory event bus (embedded); set: Redis Streams
    event_redelivery_ms: int = 5000  # Redis: an unacked event is redelivered after this idle time
    signing_key_path: Path | None = None  # Ed25519 PEM; default <data_dir>/identity-signing-key.pem (made on first start)
    jwt_audience: str = "ogpgy-bank"
    jwt_issuer: str = "ogpgy-identity"
    token_ttl_seconds: int = 3600
    token_max_lifetime_seconds: int = 0  # a token living longer (exp - iat) is refused; 0: token_ttl_seconds
    key_publish_seconds: float = 10.0  # a rotated signing key is published this long before it signs (> the refresh)
    revocation_refresh_seconds: float = 1.0  # how stale a process's token revocations may be (identity's, then the feed's)
    # Password checks (logins, a user's current password), limited before anything is hashed, in
    # moving windows ("N/period;..."), shared by identity's replicas through redis_url:
    login_limits_username_at_address: str = "5/10 seconds;10/minute;20/hour;50/day"  # tries; a success clears them
    login_limits_address: str = "50/minute;500/hour"  # failures of one address, across usernames
    login_limits_username: str = "30/minute"  # tries at one username from addresses it has not logged in from lately
    login_limits_username_overflow: str = "1/2 seconds"  # once that is full: one more try at the username this often,
    login_limits_username_overflow_at_address: str = "1/30 seconds"  # and this often from any one address
    login_known_address_days: int = Field(default=30, ge=1)  # an address logged in from is exempt from the username's ceiling
    admin_username: str = "admin"
    admin_password: str = Field(
        default="", repr=False
    )  # empty: generated on first start and written to <data_dir>/admin-password
    cache_enabled: bool = True
    breaker_fail_max: int = 5  # calls to an outside dependency (VelocityPay) failing in a row
    breaker_reset_seconds: float = 10.0
    network_timeout_seconds: float = 2.0
    queue_poll_seconds: float = 0.2
    payment_stale_seconds: float = 10.0  # a PENDING payment untouched this long is the worker's (a lost answer, a crash)
    interest_chunk_size: int = 1000
    bank_time_zone: str = "Europe/Amsterdam"  # the bank's business dates are this zone's dates
    close_of_business_at: time = time(22, 0)  # a date may be closed from this local time on
    first_business_date: date | None = None  # the first date the close of business runs; None: the latest due
    close_of_business_scheduler: bool = True  # the interest context closes the dates due itself (one replica: a lease)
    close_of_business_poll_seconds: float = 60.0  # how often that scheduler looks whether a date is due
    business_calendars: dict[str, str] = Field(
        default_factory=lambda: dict(BUSINESS_CALENDARS)
    )  # per currency: a financial market of the `holidays` library (ECB: TARGET2) or a country code
    loan_four_eyes_minor: dict[str, int] = Field(
        default_factory=lambda: dict(FOUR_EYES_ABOVE_MINOR)
    )  # per currency: a loan above this principal needs two approving admins; a currency not named: always
    operator_four_eyes_minor: dict[str, int] = Field(
        default_factory=lambda: dict(OPERATOR_FOUR_EYES_ABOVE_MINOR)
    )  # per currency: an operator's refund or compensation above this amount needs two admins; not named: always
    smtp_url: str = Field(
        default="", repr=False
    )  # smtp://host:port of the mail server; empty: the mail simulator beside the bank
    mail_sender: str = "OgPgy Bank <no-reply@ogpgy.bank>"
    mail_timeout_seconds: float = 5.0
    mail_retry_seconds: float = 1.0  # the first retry of a message the mail server did not take; doubling, at most 10 min
    fraud_rules_path: Path | None = None  # TOML like services/payment/fraud.toml; default: that file
    control_plane_open: bool = False  # a simulator served alone (its own port) needs no admin for its controls
    tls: bool = False  # serve TLS with the bank's CA (required for any bind beyond loopback)
    mtls: bool = False  # a process of a distributed mesh: mutual TLS, contexts known by their certificates
    process: str = ""  # the process kind this process serves (its server certificate's name)
    signs_tokens: bool = True  # holds the signing key (serves identity, or everything); else verifies only
    pki_dir: Path | None = None  # the bank's CA and certificates; default <data_dir>/pki
    page_key_file: Path | None = None  # the page-token secret every process shares; default <data_dir>/page-token-key
    network_member_key_path: Path | None = (
        None  # the bank's key at VelocityPay; default <data_dir>/velocitypay-member-key (made on first start)
    )

    def redacted(self) -> dict[str, Any]:
        """Every setting as it is in effect, the secrets redacted (`ogpgy config`)."""
        values = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            whole = name == "admin_password" and values[name]  # a password may hold "=" or "://"
            values[name] = REDACTED if whole else redact(values[name])
        return values

    def key_path(self) -> Path:
        return self.signing_key_path or Path(self.data_dir) / "identity-signing-key.pem"

    def rotated_keys_dir(self) -> Path:
        """Where `ogpgy keys rotate` writes the signing keys that follow the first one."""
        return self.key_path().parent / "signing-keys"

    def public_keys_path(self) -> Path:
        """The JWK set of the signing keys (what GetSigningKeys serves), for processes that only verify."""
        return Path(self.data_dir) / "signing-keys.jwks.json"

    def page_key_path(self) -> Path:
        return self.page_key_file or Path(self.data_dir) / "page-token-key"

    def pki_path(self) -> Path:
        return self.pki_dir or Path(self.data_dir) / "pki"

    def member_key_path(self) -> Path:
        return self.network_member_key_path or Path(self.data_dir) / "velocitypay-member-key"
