"""The bot's process settings, every one of them, from the environment and `.env`.

Every setting is read here and nowhere else, once per process, into one ``BotConfig``: the
Slack and Redis settings, how eagerly the bot alerts (``AlertPolicy``, ``BADGATEWAY_ALERT_*``),
the queue's timings (``QueueTuning``, ``BADGATEWAY_QUEUE_*``), where a worker's results go, and
where the sites file is (``BotConfig.load_sites`` reads it with checks.settings). The
environment wins over `.env`, for every setting alike. A missing or malformed setting stops
start-up with one line that names it, says what is wrong and what would be right
(ConfigError). `.env` is read like the sites file: only a regular file (a FIFO is not waited
on), UTF-8.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dotenv import dotenv_values

from badgateway.checks.regular_file import read_regular_file
from badgateway.checks.settings import Settings, load_settings, one_line

MAX_DOTENV_BYTES = 1024 * 1024
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes "²", which int() refuses
_COUNT = re.compile(r"[0-9]{1,9}")
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # no ":" and no glob characters
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,3})?")

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
MAX_RATE_SCALE = 1000.0  # posting 1,000 times Slack's pace is as good as not pacing at all


class ConfigError(ValueError):
    """One line naming the setting that is missing or wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class TuningError(ConfigError):
    """A BADGATEWAY_QUEUE_* variable is not a usable number; the message names it."""


def _numbers(
    values: Mapping[str, str], error: Callable[[str], ConfigError]
) -> Callable[..., float]:
    """A reader of numeric settings (each named in full, so a search finds where it is read):
    unset gives the default, anything else must be a finite number above (or, with
    ``zero_ok``, at least) 0 — whole where ``whole``."""

    def number(key: str, default: float, *, whole: bool = False, zero_ok: bool = False) -> float:
        text = values.get(key, "").strip()
        if not text:
            return default
        kind = "whole number" if whole else "number"
        bound = "0 or more" if zero_ok else "greater than 0"
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise error(f"{key} must be a {kind} {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise error(f"{key} must be a {kind} {bound}, got {text!r}")
        return value

    return number


@dataclass(frozen=True)
class QueueTuning:
    """How the queue behaves (bot.queue.tuning uses it; the reasons for each value are there).

    Production values are the defaults below; tests shorten them (``BADGATEWAY_QUEUE_*``).
    """

    heartbeat_s: int = 5  # a running job that has not beaten for this long is stuck
    sweep_s: float = 2.0  # how often (cluster-wide) stuck jobs are looked for
    abort_wait_s: float = 3.0  # how long a sweep lets a live owner acknowledge the abort
    retries: int = 3  # tries per job, the first included ("failed after 3 tries")
    retry_delay_s: float = 1.0  # first retry delay; doubles, with jitter, up to the cap
    retry_delay_cap_s: float = 10.0
    job_margin_s: float = 15.0  # job timeout = diagnosis budget + this (sink calls, Redis)
    sink_timeout_s: float = 10.0  # one sink call (a Slack post with its retries)
    dequeue_timeout_s: float = 1.0  # how quickly an idle worker notices a stop
    worker_info_s: int = 5  # how often a worker reports itself (seen by `status`)
    keep_s: int = 86_400  # how long a diagnosis's results stay in Redis
    redis_retries: int = 20  # per command, while Redis restarts (≈ 10 s with the backoff)
    host_wait_s: float = 30.0  # how long logs on a host wait for a worker there to read them

    @property
    def beat_every_s(self) -> float:
        """Beat several times per heartbeat window so one slow beat does not look like death."""
        return max(0.2, self.heartbeat_s / 4)

    def job_timeout_s(self, settings: Settings) -> int:
        return math.ceil(settings.diagnosis_budget_s + self.job_margin_s)

    def recovery_estimate_s(self) -> float:
        """Upper bound from a worker's death to its job starting again elsewhere."""
        return self.heartbeat_s + self.sweep_s + self.abort_wait_s + self.retry_delay_s

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueueTuning:
        """From ``BADGATEWAY_QUEUE_*`` in ``env``; raises TuningError naming a bad one."""
        number = _numbers(os.environ if env is None else env, TuningError)
        base = cls()
        return cls(
            heartbeat_s=int(number("BADGATEWAY_QUEUE_HEARTBEAT_S", base.heartbeat_s, whole=True)),
            sweep_s=number("BADGATEWAY_QUEUE_SWEEP_S", base.sweep_s),
            abort_wait_s=number("BADGATEWAY_QUEUE_ABORT_WAIT_S", base.abort_wait_s),
            retries=int(number("BADGATEWAY_QUEUE_RETRIES", base.retries, whole=True)),
            retry_delay_s=number("BADGATEWAY_QUEUE_RETRY_DELAY_S", base.retry_delay_s),
            retry_delay_cap_s=number("BADGATEWAY_QUEUE_RETRY_DELAY_CAP_S", base.retry_delay_cap_s),
            job_margin_s=number("BADGATEWAY_QUEUE_JOB_MARGIN_S", base.job_margin_s),
            sink_timeout_s=number("BADGATEWAY_QUEUE_SINK_TIMEOUT_S", base.sink_timeout_s),
            dequeue_timeout_s=number("BADGATEWAY_QUEUE_DEQUEUE_TIMEOUT_S", base.dequeue_timeout_s),
            worker_info_s=int(
                number("BADGATEWAY_QUEUE_WORKER_INFO_S", base.worker_info_s, whole=True)
            ),
            keep_s=int(number("BADGATEWAY_QUEUE_KEEP_S", base.keep_s, whole=True)),
            redis_retries=int(
                number("BADGATEWAY_QUEUE_REDIS_RETRIES", base.redis_retries, whole=True)
            ),
            host_wait_s=number("BADGATEWAY_QUEUE_HOST_WAIT_S", base.host_wait_s),
        )


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
        """From ``BADGATEWAY_ALERT_*`` in ``env``; raises ConfigError naming a bad one."""
        number = _numbers(os.environ if env is None else env, ConfigError)
        base = cls()
        return cls(
            failures_to_open=int(
                number("BADGATEWAY_ALERT_FAILURES", base.failures_to_open, whole=True)
            ),
            successes_to_recover=int(
                number("BADGATEWAY_ALERT_SUCCESSES", base.successes_to_recover, whole=True)
            ),
            flap_window_s=number(
                "BADGATEWAY_ALERT_FLAP_WINDOW_S", base.flap_window_s, zero_ok=True
            ),
            storm_threshold=int(
                number("BADGATEWAY_ALERT_STORM_THRESHOLD", base.storm_threshold, zero_ok=True)
            ),
            storm_hold_s=number("BADGATEWAY_ALERT_STORM_HOLD_S", base.storm_hold_s, zero_ok=True),
            storm_window_s=number(
                "BADGATEWAY_ALERT_STORM_WINDOW_S", base.storm_window_s, zero_ok=True
            ),
            body_limit_bytes=int(
                number("BADGATEWAY_ALERT_BODY_LIMIT_BYTES", base.body_limit_bytes, whole=True)
            ),
        )


@dataclass(frozen=True)
class HistoryRetention:
    """How much of each target's history is kept (bot.history_store): at most ``keep``
    snapshots (and markers), none older than ``days``; the last healthy one is kept regardless.
    From BADGATEWAY_HISTORY_KEEP, BADGATEWAY_HISTORY_DAYS and BADGATEWAY_MARKER_WINDOW_HOURS."""

    keep: int = 50
    days: float = 7.0
    # A failure that starts this soon after a marker (checks.markers) names it as the likely
    # cause; older markers are context.
    marker_window_hours: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HistoryRetention:
        """From ``BADGATEWAY_HISTORY_*`` in ``env``; raises ConfigError naming a bad one."""
        number = _numbers(os.environ if env is None else env, ConfigError)
        base = cls()
        return cls(
            keep=int(number("BADGATEWAY_HISTORY_KEEP", base.keep, whole=True)),
            days=number("BADGATEWAY_HISTORY_DAYS", base.days),
            marker_window_hours=number(
                "BADGATEWAY_MARKER_WINDOW_HOURS", base.marker_window_hours, zero_ok=True
            ),
        )


@dataclass(frozen=True)
class BotConfig:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None  # set: Socket Mode; unset: HTTP mode
    slack_api_url: str = DEFAULT_SLACK_API_URL
    sites_path: str | None = None
    ca_file: str | None = None  # BADGATEWAY_CA_FILE: the private CA, unless the sites file says
    redis_url: str | None = None  # set: work goes through the queue; unset: in-process
    port: int = 3000
    alerts_token: str | None = None
    worker_concurrency: int = 50
    # Queue mode: a diagnosis no worker has taken after this long says so on its root message.
    worker_wait_s: float = 20.0
    share_window_s: float = 30.0  # a `/502` this soon after a site's run ends shares it
    sink: str | None = None  # BADGATEWAY_SINK: "module:factory" a worker feeds instead of Slack
    worker_name: str | None = None  # BADGATEWAY_WORKER_NAME: shown by `status`
    # Slack's rate limits as this workspace gets them, as a multiple of the documented ones:
    # posts and root updates are paced to them (bot.slack_client.PostPace, RootUpdates).
    slack_rate_scale: float = 1.0
    tuning: QueueTuning = field(default_factory=QueueTuning)
    alert_policy: AlertPolicy = field(default_factory=AlertPolicy)
    history: HistoryRetention = field(default_factory=HistoryRetention)
    redis_prefix: str = "bgw"  # every Redis key of this install starts with it and ":"
    metrics_push_s: float = 5.0  # a worker's metrics reach Redis (and /metrics) this often

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def alerts_post(self) -> bool:
        """Whether this configuration posts automatic alerts (Redis and a bot token)."""
        return bool(self.redis_url and self.slack_bot_token)

    def load_sites(self, path: str | None = None, *, alerting: bool = False) -> Settings:
        """The sites file at ``path`` (a `--sites` argument), else ``BADGATEWAY_SITES``,
        checked. For a process that alerts (``alerting``: serve, worker) with alerts on, every
        site needs a channel to post its alerts in. Raises SettingsError or ConfigError."""
        env = {"BADGATEWAY_SITES": self.sites_path or "", "BADGATEWAY_CA_FILE": self.ca_file or ""}
        settings = load_settings(path, env=env)
        if alerting and self.alerts_post and not settings.default_channel:
            lost = [site.name for site in settings.sites if not site.channel]
            if lost:
                raise ConfigError(
                    f"sites file {path or self.sites_path!r}: site {lost[0]!r} has no 'channel'"
                    " and settings.default_channel"
                    " is not set: its alerts would go nowhere (set one of them"
                    + (f"; {len(lost) - 1} more site(s) lack one too)" if len(lost) > 1 else ")")
                )
        return settings


def _merged(env: Mapping[str, str] | None, dotenv_path: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if dotenv_path and os.path.exists(dotenv_path):
        try:
            text = read_regular_file(dotenv_path, MAX_DOTENV_BYTES).decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"{dotenv_path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{dotenv_path!r}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
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
    if bot_token and not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
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
        raise ConfigError(f"PORT must be a port number (1-65535), got {port_text!r}")
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
    sink = get("BADGATEWAY_SINK")
    if sink and not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?", sink):
        raise ConfigError(f"BADGATEWAY_SINK must be module:factory, got {sink!r}")
    scale_text = get("BADGATEWAY_SLACK_RATE_SCALE") or "1"
    if not _SECONDS.fullmatch(scale_text) or not 0 < float(scale_text) <= MAX_RATE_SCALE:
        raise ConfigError(
            f"BADGATEWAY_SLACK_RATE_SCALE must be a number above 0, at most {MAX_RATE_SCALE:g}"
            f" (1 = Slack's documented limits): {scale_text!r}"
        )
    redis_prefix = get("BADGATEWAY_REDIS_PREFIX") or "bgw"
    if not _REDIS_PREFIX.fullmatch(redis_prefix):
        raise ConfigError(
            "BADGATEWAY_REDIS_PREFIX must be 1-32 letters, digits, '_', '.' or '-' "
            f"(no ':' or '*'), got {redis_prefix!r}"
        )
    push_text = get("BADGATEWAY_METRICS_PUSH_S") or "5"
    if not _SECONDS.fullmatch(push_text) or not 0.1 <= float(push_text) <= 300:
        raise ConfigError(f"BADGATEWAY_METRICS_PUSH_S must be seconds (0.1-300): {push_text!r}")
    config = BotConfig(
        slack_bot_token=bot_token,
        slack_signing_secret=secret,
        slack_app_token=app_token,
        slack_api_url=api_url,
        sites_path=get("BADGATEWAY_SITES"),
        ca_file=get("BADGATEWAY_CA_FILE"),
        redis_url=redis_url,
        port=int(port_text),
        alerts_token=get("ALERTS_TOKEN"),
        worker_concurrency=int(conc_text),
        worker_wait_s=float(wait_text),
        share_window_s=share_window_s,
        sink=sink,
        worker_name=get("BADGATEWAY_WORKER_NAME"),
        slack_rate_scale=float(scale_text),
        tuning=QueueTuning.from_env(v),
        alert_policy=AlertPolicy.from_env(v),
        history=HistoryRetention.from_env(v),
        redis_prefix=redis_prefix,
        metrics_push_s=float(push_text),
    )
    problem = serve_problem(config) if require_slack else None
    if problem:
        raise ConfigError(problem)
    return config


def serve_problem(config: BotConfig) -> str | None:
    """Why `badgateway serve` cannot start with ``config`` (a Slack setting it needs), or None."""
    if not config.slack_bot_token:
        return "SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)"
    if not config.socket_mode and not config.slack_signing_secret:
        return "SLACK_SIGNING_SECRET is not set (needed in HTTP mode)"
    return None


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
