"""``POST /events``: deploy and change markers from CI or a person, kept in the site's history.

The body is ``{"site": NAME or URL, "text": "deployed shop v1.2.3", "by"?: "CI",
"kind"?: "deploy"}``; the marker is stamped with the time it arrived and kept through
bot.history_store (bounded by the history's retention), where a later failing diagnosis of
the site finds it (checks.markers). Guarded like the alert webhooks (bot.alerts.webhooks):
``Authorization: Bearer $ALERTS_TOKEN`` checked before the body is read, the same body cap,
bounded JSON, and every refusal one short line that changes nothing: 401, 413, 400 for a
malformed body, 422 for a site that is not configured (named), 503 without ALERTS_TOKEN.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from badgateway.bot.alerts.webhooks import bearer_token, guarded_json, refuse, reply
from badgateway.bot.config import BotConfig
from badgateway.bot.history_store import HistoryStore, marked_site
from badgateway.bot.malformed_http import quiet_malformed_requests
from badgateway.checks.markers import Marker, MarkerError, checked
from badgateway.checks.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/events"


def parse_event(body: Any, settings: Settings, now: datetime) -> Marker:
    """The marker a body asks for; raises MarkerError (a 400) or LookupError (a 422)."""
    if not isinstance(body, dict):
        raise MarkerError("body must be a JSON object")
    unknown = sorted(set(body) - {"site", "text", "by", "kind"})
    if unknown:
        raise MarkerError(f"unknown field {unknown[0][:40]!r}")
    for name in ("site", "text", "by", "kind"):
        if name in body and not isinstance(body[name], str):
            raise MarkerError(f"'{name}' must be a string")
    given = body.get("site") or ""
    if not given.strip():
        raise MarkerError("needs 'site' (a configured site's name or URL)")
    if not isinstance(body.get("text"), str):
        raise MarkerError("needs 'text', e.g. 'deployed shop v1.2.3'")
    site = marked_site(given, settings)
    if site is None:
        raise LookupError(f"unknown site {given[:100]!r}: not in the sites file")
    at = now.isoformat(timespec="seconds")
    return checked(
        site.name, body["text"], at, by=body.get("by", ""), kind=body.get("kind", "change")
    )


def add_event_routes(
    app: web.Application, config: BotConfig, settings: Settings, store: HistoryStore
) -> None:
    """Mount POST /events on ``app``, keeping markers in ``store``."""
    limit = config.alert_policy.body_limit_bytes
    token = bearer_token(config)
    quiet_malformed_requests()

    async def event(request: web.Request) -> web.Response:
        body = await guarded_json(request, token, limit, "events")
        if isinstance(body, web.Response):
            return body
        try:
            marker = parse_event(body, settings, datetime.now(UTC))
        except MarkerError as exc:
            return refuse(400, str(exc))
        except LookupError as exc:
            return refuse(422, str(exc.args[0]))
        await store.mark(marker)
        log.info("marker for %s: %s", marker.target, marker.text)
        return reply(201, marker=marker.to_dict())

    app.router.add_post(EVENTS_PATH, event)
