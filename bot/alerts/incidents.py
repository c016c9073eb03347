"""Incidents: one per site, opened by failing probes or alerts, kept in Redis, moved by people.

The state machine, per site:

- K failed probes in a row (``failures_to_open``, default 2) or a firing alert open an
  incident. It is not posted at once: ``bot.alerts.posting`` holds it ``storm_hold_s`` so
  that sites failing together are posted together (``settle``/``flush``).
- K passing probes in a row (``successes_to_recover``) mark it **recovered**; "recovered
  after 12 min" goes into its thread. If the site fails again within ``flap_window_s``, the
  same incident reopens (flapping stays one incident).
- A person pressing *Resolved* closes it; so does the last of its alerts resolving (an
  incident tracks which alerts fire for it: one of four resolving leaves it open).
- Alerts for a site with an incident go into that incident's thread, never a new root; an
  alert already known is not announced again (Alertmanager repeats a group's every alert).

Nothing lives in the process: a new ``Incidents`` over the same Redis carries on.
What people do in Slack (bot.alerts.chat) calls ``take``, ``resolve``, ``rediagnose``,
``mute`` and ``status_text``. The policy (how eagerly) is ``bot.config.AlertPolicy``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from badgateway.bot import storage
from badgateway.bot.alerts import messages
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.places import ProbeOutcome as ProbeOutcome
from badgateway.bot.alerts.places import changed
from badgateway.bot.alerts.posting import AlertPosts, diagnosis_origin
from badgateway.bot.alerts.store import OPEN, RECOVERED, RESOLVED, Incident, IncidentStore, Mute
from badgateway.bot.config import AlertPolicy
from badgateway.bot.flights import ShowRun, SiteFlights
from badgateway.bot.history_store import HISTORY_BUDGET_S, HistoryStore
from badgateway.bot.pipeline import Carrier
from badgateway.checks.settings import Settings, Site, default_port
from badgateway.checks.timeline import REOPENED, IncidentRecord, started_before

# While an incident is open, places moving (fine again from us-east, down from eu-west too)
# are one thread note per this window at most; the root's Where line follows every round.
PLACE_NOTE_EVERY_S = 300.0
WAITING_SHOWN_TTL_S = 7 * 24 * 3600.0  # an incident's diagnosis is said to wait once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertSignal:
    """One alert as its sender shows it now. ``key`` is the same in every notification that
    carries the alert (its source and Alertmanager fingerprint, else its labels)."""

    key: str
    firing: bool
    text: str  # what it says: its summary, description or name
    starts_at: float | None = None  # when its sender saw it start (Alertmanager's startsAt)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d' → seconds (a bare number is minutes). Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 30m, 1h, 2d)")
    seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "m").lower()]
    if not 0 < seconds <= 30 * 86400:
        raise ValueError("a mute lasts from a second to 30 days")
    return seconds


def _reported_at(alerts: Sequence[AlertSignal], now: float) -> float:
    """The earliest start its firing alerts give (Alertmanager's ``startsAt``), else ``now``:
    a start in the future (a sender's clock ahead) is not one."""
    starts = [a.starts_at for a in alerts if a.firing and a.starts_at is not None]
    return min([s for s in starts if s <= now] or [now])


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def site_for_url(url: str, settings: Settings) -> Site:
    """The configured site serving ``url``, or an ad-hoc one posted to the default channel."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for site in settings.sites:
        if site.url.rstrip("/") == url.rstrip("/"):
            return site
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    if host and scheme in ("http", "https"):
        configured = settings.site_for(host, scheme, port or default_port(scheme))
    else:
        configured = None
    if configured is not None:
        return configured
    return Site(name=host or url, url=url, channel=settings.default_channel)


class Incidents:
    def __init__(
        self,
        store: IncidentStore,
        notifier: SlackNotifier | None,
        settings: Settings,
        policy: AlertPolicy | None = None,
        carrier: Carrier | None = None,
        clock: Callable[[], float] = time.time,
        *,
        flights: SiteFlights | None = None,
        show_run: ShowRun | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        self.store = store
        self.history = history  # where an incident that ended is kept for `history SITE`
        self.settings = settings
        self.policy = policy or AlertPolicy()
        self.clock = clock
        # Slack and the carrier are the posting side's; the state machine only moves incidents.
        self.posts = AlertPosts(
            store,
            notifier,
            settings,
            self.policy,
            carrier,
            clock,
            flights=flights,
            show_run=show_run,
        )
        # The verdict arrived (called by bot.alerts.sink): kept, and shown on the root.
        self.diagnosed = self.posts.record_verdict

    origin = staticmethod(diagnosis_origin)

    async def settle(self) -> int:
        """Wait the storm hold, then post what is pending (bot.alerts.posting)."""
        return await self.posts.settle()

    async def flush(self, *, force: bool = False) -> int:
        return await self.posts.flush(force=force)

    async def close(self) -> None:
        await self.posts.drain()  # a storm's last rewrite is shown before the process ends
        await self.store.close()

    # -- what opens, moves and closes incidents ------------------------------------------
    async def observe(self, site: Site, outcome: ProbeOutcome) -> Incident | None:
        """Feed one scheduled probe's result; returns the site's incident if it has one.
        Call ``settle`` afterwards (the monitor does) so a new incident gets posted."""
        now = self.clock()
        async with self.store.site_lock(site.name):
            streak = await self.store.record_probe(site.name, outcome.ok, now)
            incident = await self.store.current(site.name)
            if incident is not None and outcome.places and incident.state != RESOLVED:
                await self._places_seen(incident, outcome, now)
            if outcome.ok:
                if (
                    incident is not None
                    and incident.state == OPEN
                    and streak.successes >= self.policy.successes_to_recover
                ):
                    await self._recover(incident, now)
                return incident
            if streak.failures < self.policy.failures_to_open:
                return incident
            if incident is not None and incident.state == OPEN:
                if outcome.context and not incident.context:
                    incident.context = outcome.context
                    await self.store.save(incident)
                return incident
            if incident is not None and incident.state == RECOVERED:
                await self._reopen(incident, outcome.what, now)
                return incident
            if await self.store.muted(site.name):
                return None
            since = streak.first_failure_at or now
            return await self._open(
                site, outcome.what, "monitor", since, outcome, now, last_good_at=streak.last_ok_at
            )

    async def _places_seen(self, incident: Incident, outcome: ProbeOutcome, now: float) -> None:
        """Keep where the site fails now; while it is open, a place that moved (fine again
        from us-east, down from eu-west too) is one note in its thread and the root's line."""
        before, incident.places = incident.places, dict(outcome.places)
        if before == incident.places:
            return
        moved = changed(before, incident.places)  # a place going quiet is only the root's
        noted = incident.places_noted_at
        # A place flapping every round is one note per window, not one per round (no alert
        # storm in the thread); the root's Where line always shows the latest round.
        note = (
            incident.state == OPEN
            and bool(moved)
            and (noted is None or now - noted >= PLACE_NOTE_EVERY_S)
            and not await self.store.muted(incident.site)
        )
        if note:
            incident.places_noted_at = now
        await self.store.save(incident)
        if incident.state != OPEN:
            return
        if note:
            await self.posts.note(incident, messages.places_moved_note(incident, moved))
        await self.posts.refresh_root(incident)

    async def alerts_seen(
        self,
        site: Site,
        source: str,
        alerts: Sequence[AlertSignal],
        outcome: ProbeOutcome | None = None,
    ) -> Incident | None:
        """What a sender says now about some of ``site``'s alerts: open, note, or close.

        Alertmanager sends a group's every alert in every notification, so only changes are
        announced (an alert firing that was not, one that stopped): one thread note and one
        root update per notification, none when nothing changed. The incident resolves when
        none of the alerts it tracks fires any more."""
        now = self.clock()
        firing = {a.key: a.text for a in alerts if a.firing}
        stopped = [a.key for a in alerts if not a.firing]
        async with self.store.site_lock(site.name):
            incident = await self.store.current(site.name)
            muted = await self.store.muted(site.name)
            if incident is None or incident.state == RESOLVED:
                if not firing or muted:
                    return None
                what = next(iter(firing.values()))
                since, last_good_at = await self._started(site, _reported_at(alerts, now))
                return await self._open(
                    site, what, source, since, outcome, now, firing, last_good_at
                )
            tracked = len(incident.firing)
            started = {k: text for k, text in firing.items() if k not in incident.firing}
            ended = [incident.firing.pop(k) for k in stopped if k in incident.firing]
            incident.firing.update(started)
            incident.alerts += len(started)
            # An incident that tracks no alert (opened by the probes, or before alerts were
            # tracked) closes on any resolved alert, as it always has.
            if stopped and not incident.firing and (ended or not tracked):
                which = "the" if incident.alerts <= 1 else "its last"
                why = f"{which} {source} alert resolved"
                await self._close(incident, None, why)
                return incident
            if started and incident.state == RECOVERED:
                await self._reopen(incident, next(iter(started.values())), now)
                return incident
            if not started and not ended:
                return incident  # a repeat of what is known: nothing to say
            await self.store.save(incident)
            if not muted:
                note = messages.alerts_changed_note(
                    source, list(started.values()), ended, len(incident.firing)
                )
                await self.posts.note(incident, note)
            await self.posts.refresh_root(incident)
            return incident

    async def _started(self, site: Site, now: float) -> tuple[float, float | None]:
        """When an alert reported at ``now`` (its start, else its arrival) started, as the
        site's history saw it (an alert has no probe streak): (its first failure, its last
        good check); (``now``, None) when the history cannot say, or cannot be read in its
        budget."""
        if self.history is None:
            return now, None
        try:
            async with asyncio.timeout(HISTORY_BUDGET_S):
                history = await self.history.load(site.name)
        except Exception:
            log.warning("history of %s not read for an alert", site.name, exc_info=True)
            return now, None
        arrived = datetime.fromtimestamp(now, UTC)
        found = started_before(history.recent, history.probes, arrived, history.last_good)
        if found is None:
            return now, None
        first = found.first_failure_at
        since = datetime.fromisoformat(first).timestamp() if first else now
        return since, datetime.fromisoformat(found.last_good_at).timestamp()

    async def _open(
        self,
        site: Site,
        what: str,
        source: str,
        since: float,
        outcome: ProbeOutcome | None,
        now: float,
        firing: dict[str, str] | None = None,
        last_good_at: float | None = None,
    ) -> Incident:
        incident = Incident.new(
            site.name,
            site.url,
            site.channel or self.settings.default_channel,
            since=since,
            last_good_at=last_good_at,
            opened_at=now,
            what_failed=what,
            source=source,
            facts=dict(outcome.facts) if outcome else {},
            context=outcome.context if outcome else None,
            places=dict(outcome.places) if outcome else {},
            firing=dict(firing or {}),
            alerts=max(1, len(firing or {})),
        )
        await self.store.save(incident)
        await self.store.set_current(incident)
        await self.store.add_pending(incident.id, now)
        log.info("incident %s opened for %s: %s", incident.id, site.name, what)
        return incident

    async def _reopen(self, incident: Incident, what: str, now: float) -> None:
        incident.state = OPEN
        incident.flaps += 1
        incident.recovered_at = None
        incident.what_failed = what
        await self.store.save(incident)
        await self.store.set_current(incident)  # no expiry while open
        await self._keep_ended(incident, now, REOPENED)  # its recovery was not its end
        if not await self.store.muted(incident.site):
            await self.posts.note(incident, messages.failing_again_note(incident, what))
        await self.posts.refresh_root(incident)

    async def _recover(self, incident: Incident, now: float) -> None:
        incident.state = RECOVERED
        incident.recovered_at = now
        await self.store.save(incident)
        await self.store.set_current(incident, ttl_s=self.policy.flap_window_s)
        await self.posts.note(incident, messages.recovered_note(incident, now))
        await self.posts.refresh_root(incident)
        # Kept now: a recovered incident is over unless it fails again within the flap window
        # (then its record is kept again when it ends, and the later one is shown).
        await self._keep_ended(incident, now, "recovered: its probes pass again")

    async def _close(self, incident: Incident, user: str | None, why: str) -> None:
        now = self.clock()
        incident.state = RESOLVED
        incident.resolved_at = now
        incident.resolved_by = user
        await self.store.save(incident)
        await self.store.clear_current(incident)
        await self.store.drop_pending(incident.id)
        await self.posts.note(incident, messages.resolved_note(incident, user, why, now))
        await self.posts.refresh_root(incident)
        await self._keep_ended(incident, now, f"resolved by {user}" if user else why)

    async def _keep_ended(self, incident: Incident, now: float, how: str) -> None:
        """The ended (or REOPENED) incident in its site's history: logged and skipped when
        it cannot be kept (the history loses a line; the incident never waits on it)."""
        if self.history is None:
            return
        cause = incident.cause or incident.what_failed or "unknown"
        if incident.cause and incident.cause_summary:
            cause = f"{incident.cause}: {incident.cause_summary}"
        record = IncidentRecord(
            incident.id, incident.site, _iso(incident.opened_at), _iso(now), cause[:300], how
        )
        try:
            async with asyncio.timeout(HISTORY_BUDGET_S):
                await self.history.ended(record)
        except Exception:
            log.warning("ended incident %s not kept in history", incident.id, exc_info=True)

    async def rediagnose(self, incident_id: str, user: str | None = None) -> Incident | None:
        """*Re-run* in an alert's thread: a new diagnosis into the same thread."""
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        if user:
            await self.posts.note(incident, messages.rerun_note(user))
        await self.posts.diagnose(incident_id, fresh=True)  # never the run it re-runs
        return await self.store.get(incident_id)

    async def sharing(self, url: str, diagnosis_id: str) -> Incident | None:
        """The open incident of the site at ``url`` that shows the site's run
        ``diagnosis_id`` (it joined the run rather than starting one)."""
        incident = await self.incident_for_url(url)
        return incident if incident is not None and incident.diagnosis_id == diagnosis_id else None

    async def waiting_for_worker(self, incident_id: str, diagnosis_id: str, since: float) -> None:
        """No worker has taken the incident's diagnosis (queued at ``since``): its root says so,
        once, whichever web process notices first (a claim in Redis)."""
        shown = storage.key("waiting", "shown", diagnosis_id, "incident", incident_id)
        if not await storage.claim(self.store.redis, shown, WAITING_SHOWN_TTL_S):
            return
        await self._set_waiting(incident_id, diagnosis_id, since)

    async def worker_took(self, incident_id: str, diagnosis_id: str) -> None:
        """A result of the incident's diagnosis came: a "waiting for a worker" line goes."""
        incident = await self.store.get(incident_id)
        if incident is not None and incident.waiting_since is not None:
            await self._set_waiting(incident_id, diagnosis_id, None)

    async def _set_waiting(self, incident_id: str, diagnosis_id: str, since: float | None) -> None:
        incident = await self.store.get(incident_id)
        if incident is None:
            return
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            if incident.diagnosis_id != diagnosis_id or incident.diagnosis != "diagnosing":
                return  # a newer run, or the verdict is in: the root shows that
            if incident.waiting_since == since:
                return
            incident.waiting_since = since
            await self.store.save(incident)
        await self.posts.refresh_root(incident)

    # -- what people do (the Slack app calls these) -------------------------------------------
    async def list_open(self) -> list[Incident]:
        return [i for i in await self.store.active() if i.state == OPEN]

    async def incident_for_site(self, site: str) -> Incident | None:
        return await self.store.current(site)

    async def incident_for_thread(self, channel: str, ts: str) -> Incident | None:
        return await self.store.by_thread(channel, ts)

    async def incidents_for_thread(self, channel: str, ts: str) -> list[Incident]:
        """The incident whose alert thread this is, or every site of a grouped alert."""
        incident = await self.store.by_thread(channel, ts)
        if incident is not None:
            return [incident]
        storm = await self.store.storm_by_thread(channel, ts)
        if storm is None:
            return []
        return [i for i in [await self.store.get(x) for x in storm.incidents] if i]

    async def incident_for_url(self, url: str) -> Incident | None:
        """The open incident of the site serving ``url``: `/502 URL` then posts into its
        thread instead of opening a second one."""
        incident = await self.store.current(site_for_url(url, self.settings).name)
        return incident if incident is not None and incident.state == OPEN else None

    async def take(self, incident_id: str, user: str) -> Incident | None:
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            incident.taken_by = user
            await self.store.save(incident)
        await self.posts.note(incident, messages.taken_note(user))
        await self.posts.refresh_root(incident)
        return incident

    async def resolve(self, incident_id: str, user: str | None) -> Incident | None:
        incident = await self.store.get(incident_id)
        if incident is None:
            return None
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            if incident.state != RESOLVED:
                await self._close(incident, user, "resolved")
        return incident

    async def mute(self, site: str, seconds: float, by: str | None) -> Mute:
        mute = await self.store.mute(site, seconds, by, self.clock())
        incident = await self.store.current(site)
        if incident is not None:
            await self.posts.refresh_root(incident)
        return mute

    async def unmute(self, site: str) -> bool:
        done = await self.store.unmute(site)
        incident = await self.store.current(site)
        if incident is not None:
            await self.posts.refresh_root(incident)
        return done

    async def mutes(self) -> list[Mute]:
        return await self.store.mutes()

    async def status_text(self) -> str:
        """`/502 status`: open incidents with links to their threads, and the mutes."""
        return messages.status_text(await self.list_open(), await self.store.mutes(), self.clock())
