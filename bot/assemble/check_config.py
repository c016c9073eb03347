"""`badgateway check-config`: everything `serve` and `worker` check at start-up, and more.

Start-up checks only what can be checked without waiting on anyone (bot.config, and the sites
file in checks.settings). This command also asks what otherwise shows only later, in a
diagnosis or an alert: does each resolver answer, does the CA file parse, can this machine
read the logs it is meant to read, has every site a channel for its alerts, is Redis there,
does Slack accept the token. One line per check, ``ok``, ``warn`` or ``fail``.

Exit codes, for CI: 0 every check passed (warnings allowed), 1 a check failed, 2 the
configuration does not load (the one line `serve` would stop with).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from badgateway.bot.config import BotConfig, ConfigError, load_config, serve_problem
from badgateway.bot.queue.health import RedisUnreachable, require_redis
from badgateway.bot.slack_client import slack_error
from badgateway.checks.dns_client import Answer, Source, ask_resolver
from badgateway.checks.settings import LogSource, Settings, SettingsError, one_line

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_NOT_LOADED = 2
CHECK_TIMEOUT_S = 2  # per network check: a resolver, Redis, Slack
# Asked of a resolver when no site gives a name: any answer at all shows it is there.
FALLBACK_NAME = "example.com"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str

    def line(self) -> str:
        return one_line(f"{self.status:<4}  {self.name}: {self.detail}")


def exit_code(checks: list[Check]) -> int:
    return EXIT_CHECK_FAILED if any(c.status == "fail" for c in checks) else EXIT_OK


def _start_up(config: BotConfig, settings: Settings, sites: str | None) -> list[Check]:
    """What loading already proved, and whether `serve` would also start."""
    source = sites or config.sites_path
    out = [
        Check("settings", "ok", "every setting in the environment and .env is valid"),
        Check(
            "sites file",
            "ok",
            f"{source}: {len(settings.sites)} site(s)" if source else "none: built-in defaults",
        ),
    ]
    problem = serve_problem(config)
    if problem:
        # A worker's machine needs no signing secret, so this alone does not fail the check.
        out.append(Check("serve", "warn", f"`badgateway serve` would stop: {problem}"))
    return out


async def _resolver(spec: str, name: str) -> Check:
    report = await ask_resolver(spec, Source.SETTINGS, name, CHECK_TIMEOUT_S)
    what = f"{spec}: {report.status.value.upper()} for {name} in {report.elapsed_ms} ms"
    if report.status == Answer.TIMEOUT:
        return Check("resolver", "fail", f"{spec}: no answer in {CHECK_TIMEOUT_S} s")
    if report.status == Answer.ERROR:
        return Check("resolver", "fail", f"{spec}: {report.error or 'no answer'}")
    if report.status in (Answer.REFUSED, Answer.SERVFAIL):
        return Check("resolver", "warn", f"{what}: it answers but does not resolve the name")
    return Check("resolver", "ok", what)


async def _resolvers(settings: Settings) -> list[Check]:
    if not settings.resolvers:
        return [Check("resolver", "ok", "none configured: this machine's resolver is used")]
    names = [s.host for s in settings.sites if s.host and not s.host[0].isdigit()]
    name = names[0] if names else FALLBACK_NAME
    return list(await asyncio.gather(*(_resolver(spec, name) for spec in settings.resolvers)))


def _ca_file(settings: Settings) -> list[Check]:
    if not settings.ca_file:
        return []
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        return [Check("ca_file", "fail", f"{settings.ca_file}: not a PEM CA file ({reason})")]
    count = context.cert_store_stats()["x509_ca"]
    if not count:
        return [Check("ca_file", "fail", f"{settings.ca_file}: holds no CA certificate")]
    return [Check("ca_file", "ok", f"{settings.ca_file}: {count} CA certificate(s)")]


def _this_host(log: LogSource) -> bool:
    """Whether this machine reads ``log``: no host named, or this machine's name."""
    here = socket.gethostname()
    return log.host is None or log.host in (here, here.split(".")[0])


def _log(site: str, log: LogSource) -> Check:
    where = f"site {site!r} {log.path}"
    if not _this_host(log):
        return Check("log", "ok", f"{where}: read on {log.host} (its logs@{log.host} worker)")
    try:
        with open(log.path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return Check("log", "fail", f"{where}: cannot read it here: {exc.strerror or exc}")
    return Check("log", "ok", f"{where}: readable")


def _alert_channels(config: BotConfig, settings: Settings) -> list[Check]:
    if not config.alerts_post:
        return [Check("alerts", "ok", "off (they need REDIS_URL and SLACK_BOT_TOKEN)")]
    lost = [s.name for s in settings.sites if not (s.channel or settings.default_channel)]
    if lost:
        shown = ", ".join(repr(n) for n in lost[:5]) + (" …" if len(lost) > 5 else "")
        return [
            Check(
                "alerts",
                "fail",
                f"no 'channel' and no settings.default_channel for {shown}: "
                "their alerts would go nowhere",
            )
        ]
    return [Check("alerts", "ok", f"every site ({len(settings.sites)}) has a channel")]


async def _redis(config: BotConfig) -> list[Check]:
    if not config.redis_url:
        return [Check("redis", "ok", "REDIS_URL not set: diagnoses run inside `serve`")]
    try:
        await asyncio.wait_for(require_redis(config.redis_url), CHECK_TIMEOUT_S * 2)
    except (RedisUnreachable, TimeoutError) as exc:
        return [Check("redis", "fail", str(exc) or "no answer")]
    host = urlsplit(config.redis_url).hostname or config.redis_url
    return [Check("redis", "ok", f"{host} answers")]


async def _slack(config: BotConfig) -> list[Check]:
    if not config.slack_bot_token:
        return [Check("slack", "warn", "SLACK_BOT_TOKEN not set: nothing can post to Slack")]
    # No retry handlers: a check answers now, not after the client's retries.
    client = AsyncWebClient(
        token=config.slack_bot_token, base_url=config.slack_api_url, timeout=CHECK_TIMEOUT_S
    )
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        return [Check("slack", "fail", f"Slack rejected SLACK_BOT_TOKEN ({slack_error(exc)})")]
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = f"cannot reach {config.slack_api_url} from here ({exc or type(exc).__name__})"
        return [Check("slack", "warn", f"token not checked: {detail}")]
    team, user = response.get("team", "?"), response.get("user", "?")
    return [Check("slack", "ok", f"token accepted: @{user} in {team}")]


async def gather_checks(config: BotConfig, settings: Settings, sites: str | None) -> list[Check]:
    """Every check, in report order; the network ones run concurrently."""
    resolvers, redis, slack = await asyncio.gather(
        _resolvers(settings), _redis(config), _slack(config)
    )
    logs = [_log(site.name, log) for site in settings.sites for log in site.logs]
    return [
        *_start_up(config, settings, sites),
        *resolvers,
        *_ca_file(settings),
        *logs,
        *_alert_channels(config, settings),
        *redis,
        *slack,
    ]


def run_check_config(sites: str | None, *, as_json: bool = False) -> int:
    """`badgateway check-config [--sites FILE] [--json]`; returns the exit code."""
    try:
        config = load_config()
        settings = config.load_sites(sites)
    except (ConfigError, SettingsError) as exc:
        if as_json:
            print(json.dumps({"loaded": False, "error": str(exc), "checks": []}))
        print(f"badgateway: {exc}", file=sys.stderr)
        return EXIT_NOT_LOADED
    checks = asyncio.run(gather_checks(config, settings, sites))
    code = exit_code(checks)
    if as_json:
        document = {"loaded": True, "exit": code, "checks": [asdict(c) for c in checks]}
        print(json.dumps(document, indent=2))
    else:
        for check in checks:
            print(check.line())
    return code
