"""Alert webhooks: Prometheus Alertmanager (webhook version 4) and a small generic JSON.

``add_alert_routes`` mounts ``POST /alerts/alertmanager`` and ``POST /alerts`` on the Slack
app's aiohttp server. Every request needs ``Authorization: Bearer $ALERTS_TOKEN``, compared
as bytes in constant time before the body is read. What is refused changes nothing: 401 for
a missing or wrong token, 413 for a body over the size cap, 400 with one short reason for a
malformed body (bounded JSON; the whole body's shape is checked before any alert in it is
acted on), 503 when ALERTS_TOKEN is not configured.

A well-formed alert the bot cannot map to a site (no site label or URL, an unknown site, a
URL it cannot diagnose) is skipped, named in the 202's ``skipped`` and logged: it is never a
reason to drop the other alerts of its Alertmanager group, which Alertmanager would resend
every ``group_interval``. Only a body of which nothing can be used is refused (400, with the
reasons). The schemas are in docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from badgateway.bot import bounded_json
from badgateway.bot.alerts.incidents import AlertSignal, Incidents, ProbeOutcome, site_for_url
from badgateway.bot.alerts.monitor import site_facts
from badgateway.bot.config import AlertPolicy, BotConfig
from badgateway.bot.malformed_http import quiet_malformed_requests
from badgateway.checks.settings import Settings, Site, one_line
from badgateway.checks.target import BadTarget, parse_target

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300


class BadAlert(ValueError):
    """The body is not a valid alert; the message is the 400's reason."""


class Unmapped(BadAlert):
    """A well-formed alert that names no site the bot can diagnose: skipped, not refused."""


@dataclass(frozen=True)
class ParsedAlert:
    where: str  # "alerts[2]": how the answer and the log name it
    site: Site
    signal: AlertSignal


@dataclass(frozen=True)
class Skipped:
    where: str
    reason: str  # starts with ``where``


@dataclass
class ParsedBody:
    accepted: list[ParsedAlert] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


AlertParser = Callable[[Any, Settings], ParsedBody]  # a webhook's body -> its alerts


def _shown(value: str, limit: int = 100) -> str:
    """``value`` quoted for a reason: escaped by repr, and cut when long."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def _checked_url(url: str, where: str) -> str:
    """An http(s) URL that parses (host, port) and can be diagnosed as a target."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:  # "Invalid IPv6 URL" for //[::1 or http://]/
        raise Unmapped(f"{where}: 'url' is not a URL ({exc}): {_shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unmapped(f"{where}: 'url' must be an http(s) URL, got {_shown(url)}")
    try:
        # The alert's diagnosis starts from this URL: refuse here what it would refuse.
        parse_target(url, Settings())
    except BadTarget as exc:
        raise Unmapped(f"{where}: 'url' {_shown(url)} cannot be diagnosed: {exc}") from None
    return url


def _site(name: Any, url: Any, settings: Settings, where: str) -> Site:
    if name is not None and not isinstance(name, str):
        raise BadAlert(f"{where}: 'site' must be a string")
    if url is not None and not isinstance(url, str):
        raise BadAlert(f"{where}: 'url' must be a string")
    if name:
        site = settings.site_named(name)
        if site is not None:
            return site
        if not url:
            raise Unmapped(f"{where}: unknown site {_shown(name)} and no 'url' to diagnose")
    if url:
        return site_for_url(_checked_url(url, where), settings)
    raise Unmapped(f"{where}: needs 'site' (a configured site's name) or 'url'")


def _status(value: Any, where: str) -> bool:
    if value not in ("firing", "resolved"):
        raise BadAlert(f"{where}: 'status' must be 'firing' or 'resolved'")
    return bool(value == "firing")


def parse_generic(body: Any, settings: Settings) -> ParsedBody:
    """``{"site" | "url", "status": "firing" | "resolved", "summary"?}``: one alert per site
    and sender, so a sender repeating "firing" is not announced again."""
    if not isinstance(body, dict):
        raise BadAlert("the body must be a JSON object")
    summary = body.get("summary", "")
    if not isinstance(summary, str):
        raise BadAlert("'summary' must be a string")
    firing = _status(body.get("status"), "alert")
    parsed = ParsedBody()
    try:
        site = _site(body.get("site"), body.get("url"), settings, "alert")
    except Unmapped as exc:
        parsed.skipped.append(Skipped("alert", str(exc)))
        return parsed
    signal = AlertSignal("webhook", firing, summary[:500] or "alert")
    parsed.accepted.append(ParsedAlert("alert", site, signal))
    return parsed


def _labelled_url(labels: dict[str, Any], annotations: dict[str, Any]) -> str | None:
    for value in (labels.get("url"), annotations.get("url"), labels.get("instance")):
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None


def _alert_key(alert: dict[str, Any], labels: dict[str, Any]) -> str:
    """The alert's identity across notifications: Alertmanager's fingerprint (a hash of its
    labels), else a hash of its own labels (a sender that leaves the fingerprint out)."""
    fingerprint = alert.get("fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        return f"alertmanager:{fingerprint[:64]}"
    text = json.dumps(labels, sort_keys=True, ensure_ascii=True)
    return "alertmanager:labels:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_alertmanager(body: Any, settings: Settings) -> ParsedBody:
    """Alertmanager's webhook (version 4). An alert names its site by the ``site`` label, or
    by a URL in the ``url`` label/annotation or a blackbox-style ``instance`` label; one
    that names none the bot can use is skipped, not a reason to refuse the others."""
    if not isinstance(body, dict):
        raise BadAlert("the body must be a JSON object")
    if str(body.get("version", "")) != "4":
        raise BadAlert('unsupported Alertmanager webhook version (expected "4")')
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadAlert("'alerts' must be a non-empty list")
    common = body.get("commonLabels") or {}
    if not isinstance(common, dict):
        raise BadAlert("'commonLabels' must be an object")
    parsed = ParsedBody()
    for n, alert in enumerate(alerts):
        where = f"alerts[{n}]"
        if not isinstance(alert, dict):
            raise BadAlert(f"{where}: expected an object")
        own, annotations = alert.get("labels") or {}, alert.get("annotations") or {}
        if not isinstance(own, dict) or not isinstance(annotations, dict):
            raise BadAlert(f"{where}: 'labels' and 'annotations' must be objects")
        firing = _status(alert.get("status"), where)
        labels = {**common, **own}
        name = labels.get("site")
        url = _labelled_url(labels, annotations)
        try:
            if not name and not url:
                raise Unmapped(f"{where}: no 'site' label and no URL in 'url' or 'instance'")
            site = _site(name, url, settings, where)
        except Unmapped as exc:
            parsed.skipped.append(Skipped(where, str(exc)))
            continue
        summary = next(
            (
                str(v)
                for v in (
                    annotations.get("summary"),
                    annotations.get("description"),
                    labels.get("alertname"),
                )
                if isinstance(v, str) and v
            ),
            "alert",
        )
        starts_at = _starts_at(alert.get("startsAt"))
        signal = AlertSignal(_alert_key(alert, own), firing, summary[:500], starts_at)
        parsed.accepted.append(ParsedAlert(where, site, signal))
    return parsed


def _starts_at(value: Any) -> float | None:
    """Alertmanager's ``startsAt`` (RFC 3339, nanoseconds) as epoch seconds; None when it is
    missing, not a time, or its zero time (0001-01-01: not known)."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value[:64]).timestamp()
    except (ValueError, OverflowError):
        return None
    return at if at > 0 else None


def _status_name(signal: AlertSignal) -> str:
    return "firing" if signal.firing else "resolved"


def _authorised(request: web.Request, token: bytes) -> bool:
    """The one Authorization header, as the bytes that came in, is ``Bearer <token>``.

    Bytes, not text: a header with a byte that is not UTF-8 must be a wrong token (401),
    not an encoding error (500). Two Authorization headers are refused, not picked from.
    """
    values = [value for key, value in request.raw_headers if key.lower() == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, given = values[0].partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token)


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


def bearer_token(config: BotConfig) -> bytes:
    """ALERTS_TOKEN as bytes (b"" when unset). surrogateescape: a token from the environment
    with bytes that are not UTF-8 is those bytes again, rather than an encoding error at
    every request."""
    return config.alerts_token.encode("utf-8", "surrogateescape") if config.alerts_token else b""


async def guarded_json(
    request: web.Request, token: bytes, limit: int, what: str
) -> Any | web.Response:
    """The request's JSON body, or the refusal to answer with: 503 when ``what`` is off (no
    token), 401 before the body is read, 413 over ``limit``, 400 for JSON out of bounds."""
    if not token:
        return refuse(503, f"{what} are off: ALERTS_TOKEN is not set")
    if not _authorised(request, token):
        return refuse(401, "missing or wrong bearer token")
    raw = await _read_capped(request, limit)
    if raw is None:
        return refuse(413, f"body larger than {limit} bytes")
    try:
        return bounded_json.loads(raw, max_bytes=limit)
    except bounded_json.JsonRejected as exc:
        return refuse(400, f"body: {exc}")


def reply(status: int, **fields: Any) -> web.Response:
    return web.json_response(fields, status=status)


def _reason(reason: str) -> str:
    """One short printable line: reasons quote what was sent, which may be anything."""
    text = one_line(reason)
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def refuse(status: int, reason: str) -> web.Response:
    return reply(status, error=_reason(reason))


def add_alert_routes(
    app: web.Application,
    config: BotConfig,
    settings: Settings,
    incidents: Incidents,
    policy: AlertPolicy | None = None,
) -> None:
    """Mount POST /alerts/alertmanager and POST /alerts on ``app``."""
    limit = (policy or incidents.policy).body_limit_bytes
    pending: set[asyncio.Task[int]] = set()
    token = bearer_token(config)
    quiet_malformed_requests()

    async def settle_later() -> None:
        # The hold before posting (storm grouping) must not keep the webhook waiting.
        task = asyncio.create_task(incidents.settle())
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def handle(request: web.Request, parse: AlertParser, source: str) -> web.Response:
        body = await guarded_json(request, token, limit, "alert webhooks")
        if isinstance(body, web.Response):
            return body
        try:
            parsed = parse(body, settings)
        except BadAlert as exc:
            return refuse(400, str(exc))
        for skipped in parsed.skipped:
            log.warning("%s: skipped %s", source, _reason(skipped.reason))
        if not parsed.accepted and source != "alertmanager":  # a person or script: say why
            return refuse(400, "; ".join(s.reason for s in parsed.skipped))
        # Alertmanager resends a group on any non-2xx answer, every group_interval, for ever:
        # alerts it cannot map are named in a 2xx answer (and the log), never refused.
        by_site: dict[str, list[ParsedAlert]] = {}
        for alert in parsed.accepted:
            by_site.setdefault(alert.site.name, []).append(alert)
        touched: list[str] = []
        for alerts in by_site.values():
            site, first = alerts[0].site, alerts[0].signal
            outcome = ProbeOutcome(False, first.text, site_facts(site, (), {}))
            signals = [a.signal for a in alerts]
            incident = await incidents.alerts_seen(site, source, signals, outcome)
            if incident is not None:
                touched.append(incident.id)
        await settle_later()
        return reply(
            202,
            accepted=len(parsed.accepted),
            alerts=[
                {"alert": a.where, "site": a.site.name, "status": _status_name(a.signal)}
                for a in parsed.accepted
            ],
            skipped=[{"alert": s.where, "reason": _reason(s.reason)} for s in parsed.skipped],
            incidents=touched,
        )

    async def alertmanager(request: web.Request) -> web.Response:
        return await handle(request, parse_alertmanager, "alertmanager")

    async def generic(request: web.Request) -> web.Response:
        return await handle(request, parse_generic, "webhook")

    async def finish_tasks(_: web.Application) -> None:
        tasks = list(pending)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    app.router.add_post("/alerts/alertmanager", alertmanager)
    app.router.add_post("/alerts", generic)
    app.on_cleanup.append(finish_tasks)
