"""The bot's process settings, from the environment and `.env` (environment wins).

A missing or malformed setting stops start-up with one line that names it (ConfigError).
`.env` is read like the sites file: only a regular file (a FIFO is not waited on), UTF-8.
How eagerly the bot alerts (``AlertPolicy``, ``BADGATEWAY_ALERT_*``) is read here too, from
the environment, when a process that alerts is assembled. (The queue's timings,
``BADGATEWAY_QUEUE_*``, are read by bot.queue.tuning, beside the knobs they set.)
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from dotenv import dotenv_values

from checks.regular_file import read_regular_file
from checks.settings import one_line

MAX_DOTENV_BYTES = 1024 * 1024
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes "²", which int() refuses
_COUNT = re.compile(r"[0-9]{1,9}")
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # no ":" and no glob characters
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,3})?")

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class ConfigError(ValueError):
    """One line naming the setting that is missing or wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


@dataclass(frozen=True)
class BotConfig:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None  # set: Socket Mode; unset: HTTP mode
    slack_api_url: str = DEFAULT_SLACK_API_URL
    sites_path: str | None = None
    redis_url: str | None = None  # set: work goes through the queue; unset: in-process
    port: int = 3000
    alerts_token: str | None = None
    worker_concurrency: int = 50
    # Queue mode: a diagnosis no worker has taken after this long says so on its root message.
    worker_wait_s: float = 20.0
    share_window_s: float = 30.0  # a `/502` this soon after a site's run ends shares it
    redis_prefix: str = "bgw"  # every Redis key of this install starts with it and ":"
    metrics_push_s: float = 5.0  # a worker's metrics reach Redis (and /metrics) this often

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)


def _merged(env: Mapping[str, str] | None, dotenv_path: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if dotenv_path and os.path.exists(dotenv_path):
        try:
            text = read_regular_file(dotenv_path, MAX_DOTENV_BYTES).decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"{dotenv_path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{dotenv_path!r}: not UTF-8 text (byte {exc.start})") from None
        parsed = dotenv_values(stream=io.StringIO(text))
        values.update({k: v for k, v in parsed.items() if v is not None})
    values.update(env if env is not None else os.environ)
    return values


def load_config(
    env: Mapping[str, str] | None = None,
    *,
    dotenv_path: str | None = ".env",
    require_slack: bool = False,
) -> BotConfig:
    v = _merged(env, dotenv_path)

    def get(name: str) -> str | None:
        value = v.get(name, "").strip()
        return value or None

    bot_token, secret, app_token = (
        get("SLACK_BOT_TOKEN"),
        get("SLACK_SIGNING_SECRET"),
        get("SLACK_APP_TOKEN"),
    )
    if require_slack:
        if not bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
        if not bot_token.startswith("xoxb-"):
            raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
        if app_token and not app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
        if not app_token and not secret:
            raise ConfigError("SLACK_SIGNING_SECRET is not set (needed in HTTP mode)")
    api_url = get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
    if not api_url.endswith("/"):
        api_url += "/"  # slack_sdk joins method names onto base_url
    redis_url = get("REDIS_URL")
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must be a redis:// URL, got {redis_url!r}")
    port_text = get("PORT") or "3000"
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ConfigError(f"PORT must be a port number, got {port_text!r}")
    conc_text = get("BADGATEWAY_WORKER_CONCURRENCY") or "50"
    if not _COUNT.fullmatch(conc_text) or int(conc_text) < 1:
        raise ConfigError(f"BADGATEWAY_WORKER_CONCURRENCY must be a positive number: {conc_text!r}")
    wait_text = get("BADGATEWAY_WORKER_WAIT_S") or "20"
    if not _SECONDS.fullmatch(wait_text) or float(wait_text) <= 0:
        raise ConfigError(f"BADGATEWAY_WORKER_WAIT_S must be a number of seconds: {wait_text!r}")
    window_text = get("BADGATEWAY_SHARE_WINDOW_S") or "30"
    try:
        share_window_s = float(window_text)
    except ValueError:
        share_window_s = -1.0
    if not 0 <= share_window_s < 86400:
        raise ConfigError(f"BADGATEWAY_SHARE_WINDOW_S must be seconds (0-86399): {window_text!r}")
    redis_prefix = get("BADGATEWAY_REDIS_PREFIX") or "bgw"
    if not _REDIS_PREFIX.fullmatch(redis_prefix):
        raise ConfigError(
            "BADGATEWAY_REDIS_PREFIX must be 1-32 letters, digits, '_', '.' or '-' "
            f"(no ':' or '*'), got {redis_prefix!r}"
        )
    push_text = get("BADGATEWAY_METRICS_PUSH_S") or "5"
    if not _SECONDS.fullmatch(push_text) or not 0.1 <= float(push_text) <= 300:
        raise ConfigError(f"BADGATEWAY_METRICS_PUSH_S must be seconds (0.1-300): {push_text!r}")
    return BotConfig(
        slack_bot_token=bot_token,
        slack_signing_secret=secret,
        slack_app_token=app_token,
        slack_api_url=api_url,
        sites_path=get("BADGATEWAY_SITES"),
        redis_url=redis_url,
        port=int(port_text),
        alerts_token=get("ALERTS_TOKEN"),
        worker_concurrency=int(conc_text),
        worker_wait_s=float(wait_text),
        share_window_s=share_window_s,
        redis_prefix=redis_prefix,
        metrics_push_s=float(push_text),
    )


LOG_FORMATS = ("json", "text")
SECRET_SETTINGS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "ALERTS_TOKEN")


@dataclass(frozen=True)
class LogSettings:
    """How a process logs (bot.logs): read before anything else, for every command."""

    log_format: str | None = None  # "json", "text", or None: JSON unless stderr is a terminal
    secrets: tuple[str, ...] = ()  # values no log line may show (tokens, Redis's password)


def load_log_settings(
    env: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env"
) -> LogSettings:
    """``BADGATEWAY_LOG_FORMAT`` and the secret settings' values; ConfigError on a bad format."""
    v = _merged(env, dotenv_path)
    log_format = v.get("BADGATEWAY_LOG_FORMAT", "").strip().lower() or None
    if log_format is not None and log_format not in LOG_FORMATS:
        raise ConfigError(f"BADGATEWAY_LOG_FORMAT must be json or text, got {log_format!r}")
    secrets = [v.get(name, "").strip() for name in SECRET_SETTINGS]
    redis_password = urlsplit(v.get("REDIS_URL", "").strip()).password
    return LogSettings(log_format, tuple(s for s in [*secrets, redis_password] if s))


@dataclass(frozen=True)
class AlertPolicy:
    """How eagerly the bot alerts. From BADGATEWAY_ALERT_* variables (docs/alerts.md)."""

    failures_to_open: int = 2
    successes_to_recover: int = 2
    flap_window_s: float = 900.0
    storm_threshold: int = 5  # sites posted in one batch that make a grouped alert
    storm_hold_s: float = 5.0  # how long a new incident waits for others to group with
    storm_window_s: float = 300.0  # later incidents join an active storm's thread
    body_limit_bytes: int = 256 * 1024  # webhook bodies above this get 413

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertPolicy:
        """Raises ConfigError naming the variable that is not a number."""
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, value: float) -> float:
            text = env.get(f"BADGATEWAY_ALERT_{name}", "").strip()
            if not text:
                return value
            try:
                parsed = float(text)
            except ValueError:
                raise ConfigError(
                    f"BADGATEWAY_ALERT_{name} must be a number, got {text!r}"
                ) from None
            if parsed < 0:
                raise ConfigError(f"BADGATEWAY_ALERT_{name} must not be negative")
            return parsed

        return cls(
            failures_to_open=max(1, int(number("FAILURES", default.failures_to_open))),
            successes_to_recover=max(1, int(number("SUCCESSES", default.successes_to_recover))),
            flap_window_s=number("FLAP_WINDOW_S", default.flap_window_s),
            storm_threshold=int(number("STORM_THRESHOLD", default.storm_threshold)),
            storm_hold_s=number("STORM_HOLD_S", default.storm_hold_s),
            storm_window_s=number("STORM_WINDOW_S", default.storm_window_s),
            body_limit_bytes=int(number("BODY_LIMIT_BYTES", default.body_limit_bytes)),
        )
