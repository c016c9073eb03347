"""Posting alerts: the storm hold, a site's alert alone or many in one grouped alert, the
diagnosis into the alert's thread, and keeping root messages and notes up to date.

A new incident is not posted at once: it waits ``storm_hold_s`` so that sites failing
together are posted together, as one grouped alert when there are many (bot.alerts.storm).
A Slack failure (after the client's retries) is logged and never undoes a state change;
an alert that could not be posted goes back to the hold and the next flush tries again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from badgateway.bot.alerts import messages
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.store import OPEN, Incident, IncidentStore, Storm
from badgateway.bot.alerts.storm import is_storm, shared_facts
from badgateway.bot.config import AlertPolicy
from badgateway.bot.flights import Joined, ShowRun, SiteFlights, remember_request
from badgateway.bot.pipeline import Carrier, DiagnosisRequest
from badgateway.checks.causes import CATALOGUE
from badgateway.checks.context import ProbeContext
from badgateway.checks.guard import TargetRefused
from badgateway.checks.model import Cause, Diagnosis
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings
from badgateway.checks.target import BadTarget

log = logging.getLogger(__name__)

STORM_REFRESH_S = 2.0  # a storm's root and group replies are rewritten at most this often
# chat.update is Tier 3: about 50 a minute for the workspace. The root, every STORM_REFRESH_S,
# spends 30 of them; a cause group's reply is rewritten at most once per this many seconds (one
# per slot) while sites are still being diagnosed, and every changed one once the table is
# final. Rewriting every group in every slot drew 429s that held the root's own updates back.
GROUP_UPDATE_EVERY_S = 4.0

# A storm's sites' diagnoses started during the hold: how many are queued at once, and what
# their origin's "storm" says while the storm has no id yet (its steps run in one job,
# bot.queue.job_kinds, and its verdict goes on the table). Two at a time still queues 200
# sites within the hold; all at once, workers took a burst of jobs they could not heartbeat
# (measured: 4 workers on 2 cores, 37 → 97 jobs swept as stuck, a slower storm).
EARLY_STARTS_AT_ONCE = 2
EARLY = "forming"

# What a Slack call raises once the client's own retries are spent.
SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


def diagnosis_origin(incident: Incident, *, thread: bool = True) -> dict[str, Any]:
    """Where the Slack sink posts the diagnosis: the alert's thread. A grouped alert's site
    names no thread: its diagnosis is kept for `show SITE`, not posted (bot.alerts.sink), and
    reaches only the `/502` threads that share its run. ``thread=False``: a run started before
    the alert is posted (``AlertPosts.diagnose_early``), shown by the threads that join it."""
    where: dict[str, Any] = {}
    if thread and not incident.storm_id:
        where = {"channel": incident.channel, "root_ts": incident.root_ts}
        where["thread_ts"] = incident.root_ts
    return {
        "kind": "slack",
        **where,
        "incident": incident.id,
        "site": incident.site,
        "storm": incident.storm_id,
        "root_owner": "incident",  # the alert owns the root message; the sink only replies
        # bot.metrics: a failing probe of ours, or an alert another system sent.
        "trigger": "monitor" if incident.source == "monitor" else "alert",
    }


class AlertPosts:
    def __init__(
        self,
        store: IncidentStore,
        notifier: SlackNotifier | None,
        settings: Settings,
        policy: AlertPolicy,
        carrier: Carrier | None = None,
        clock: Callable[[], float] = time.time,
        *,
        flights: SiteFlights | None = None,
        show_run: ShowRun | None = None,
    ) -> None:
        """``flights``: the sites' runs, shared with `/502` (without it every diagnosis is a
        run of its own); ``show_run``: catches an alert's thread up with a run it joined."""
        self.store = store
        self.notifier = notifier
        self.settings = settings
        self.policy = policy
        self.carrier = carrier
        self.clock = clock
        self.flights = flights
        self.show_run = show_run
        self._dirty: set[str] = set()  # storms whose table changed since it was last shown
        self._pacers: dict[str, asyncio.Task[None]] = {}
        self._group_updated_at: dict[str, float] = {}  # storm -> when a group reply was rewritten

    # -- the storm hold ------------------------------------------------------------------------
    async def settle(self) -> int:
        """Wait the storm hold, then post what is pending. Returns how many were posted.
        A storm forming meanwhile has its sites' diagnoses started during the hold."""
        if await self.store.pending_count() == 0:
            return 0
        early = asyncio.create_task(self.diagnose_early(), name="storm-early-diagnoses")
        try:
            await asyncio.sleep(self.policy.storm_hold_s)
        except asyncio.CancelledError:  # the process stops: a run half-started is a flight
            early.cancel()  # that the next flush joins
            raise
        await early  # its runs are the incidents' before the flush decides what to start
        return await self.flush()

    async def diagnose_early(self) -> int:
        """A storm forming (``storm_threshold`` incidents pending, or a storm still taking
        sites): start its sites' diagnoses now rather than when the hold ends. The hold is
        for grouping the posts; a diagnosis needs no thread to run, only one to show it in,
        and a storm's sites show their verdicts on its table. Each run is its site's flight,
        so the flush, a `/502` or an alert joins it. Returns how many were started; one that
        cannot start here is left to the flush, which says why."""
        threshold = self.policy.storm_threshold
        if self.flights is None or self.carrier is None or threshold <= 0:
            return 0
        try:
            ids = await self.store.claim_early(threshold, self.clock())
            incidents = await self.store.get_many(ids)
        except Exception:  # best effort: the flush diagnoses them after the hold
            log.warning("starting a storm's diagnoses early failed", exc_info=True)
            return 0
        turns = asyncio.Semaphore(EARLY_STARTS_AT_ONCE)

        async def start(incident: Incident) -> bool:
            async with turns:
                try:
                    return await self._start_early(incident)
                except Exception:
                    log.warning("early diagnosis of %s failed", incident.site, exc_info=True)
                    return False

        started = await asyncio.gather(*(start(i) for i in incidents))
        if ids:
            log.info(
                "storm forming: %d of %d sites' diagnoses started early", sum(started), len(ids)
            )
        return sum(started)

    async def _start_early(self, incident: Incident) -> bool:
        assert self.flights is not None
        if incident.state != OPEN or incident.root_ts or incident.diagnosis != "pending":
            return False
        try:
            ctx = await self._context(incident)
        except (TargetRefused, BadTarget):
            return False  # the flush says so on the alert
        # No thread yet: it is kept for the storm's table and `show SITE` (like a storm
        # site's, bot.alerts.sink) and reaches the threads that join the run.
        origin = {**diagnosis_origin(incident, thread=False), "storm": incident.storm_id or EARLY}
        request = DiagnosisRequest.new(ctx, origin={**origin, "flight": ctx.target.url})
        joined = await self.flights.join_with(ctx.target.url, request)
        if not joined.started:
            return False  # the site's run under way (a `/502`'s): the flush joins it (_share)
        async with self.store.site_lock(incident.site):
            fresh = await self.store.get(incident.id)
            # A verdict already in (a fast run), or the flush got there: theirs stands.
            if fresh is None or fresh.diagnosis != "pending" or fresh.diagnosis_id:
                return True
            fresh.diagnosis, fresh.diagnosis_id = "diagnosing", joined.diagnosis_id
            fresh.diagnosis_requested_at = joined.started_at
            await self.store.save(fresh)
        return True

    async def flush(self, *, force: bool = False) -> int:
        """Post every pending incident once the oldest has waited the storm hold: alone,
        or all in one grouped alert when there are many (or a storm is under way)."""
        now = self.clock()
        ids = await self.store.take_pending(
            float("inf") if force else now - self.policy.storm_hold_s
        )
        batch = [
            i
            for i in [await self.store.get(x) for x in ids]
            if i and i.state == OPEN and not i.root_ts
        ]
        if not batch:
            return 0
        async with self.store.storm_lock():
            storm = await self.store.active_storm()
            if storm is None and is_storm(len(batch), self.policy.storm_threshold):
                try:
                    storm = await self._start_storm(batch, now)
                except SLACK_ERRORS as exc:
                    log.error("posting the grouped alert failed: %s", exc)
                    for incident in batch:  # the next flush tries again
                        await self.store.add_pending(incident.id, now)
                    return 0
            if storm is not None:
                await self._join_storm(storm, batch, now)
            else:
                for incident in batch:
                    await self._post_alone(incident, now)
        for incident in batch:
            if storm is not None and incident.diagnosis_id:
                continue  # its run began while the storm formed; the verdict goes on the table
            await self.diagnose(incident.id)
        return len(batch)

    # -- one alert, or a grouped one -----------------------------------------------------------
    async def _post_alone(self, incident: Incident, now: float) -> None:
        if self.notifier is None or not incident.channel:
            log.warning("incident %s (%s) has no channel to post to", incident.id, incident.site)
            return
        mute = await self.store.muted(incident.site)
        try:
            ts = await self.notifier.post(
                incident.channel,
                messages.root_text(incident, mute, now),
                key=f"incident:{incident.id}:root",
            )
        except SLACK_ERRORS as exc:
            log.error("posting the alert for %s failed: %s", incident.site, exc)
            await self.store.add_pending(incident.id, now)  # the next flush tries again
            return
        async with self.store.site_lock(incident.site):
            fresh = await self.store.get(incident.id) or incident
            fresh.root_ts, fresh.own_root = ts, True
            await self.store.save(fresh)

    async def _start_storm(self, batch: list[Incident], now: float) -> Storm | None:
        channels = Counter(i.channel for i in batch if i.channel)
        channel = self.settings.default_channel or (
            channels.most_common(1)[0][0] if channels else None
        )
        if self.notifier is None or channel is None:
            return None
        storm = Storm(id=f"storm-{batch[0].id}", channel=channel, root_ts="", opened_at=now)
        storm.sites = [i.site for i in batch]
        storm.shared = shared_facts([i.facts for i in batch])
        storm.root_ts = await self.notifier.post_message(
            channel, messages.storm_message(storm, batch, now), key=f"{storm.id}:root"
        )
        storm.sites = []  # _join_storm adds them (and saves)
        await self.store.index_storm_thread(storm)
        log.warning("storm %s: %d sites failing at once", storm.id, len(batch))
        # What they share is the thread's first reply; the causes follow as groups form.
        shared = messages.shared_reply(storm)
        await self._safe(
            self.notifier.post(channel, shared, storm.root_ts, key=f"{storm.id}:shared")
        )
        return storm

    async def _join_storm(self, storm: Storm, batch: list[Incident], now: float) -> None:
        newcomers = [i for i in batch if i.site not in storm.sites]
        storm.sites += [i.site for i in batch if i.site not in storm.sites]
        storm.incidents += [i.id for i in batch]
        all_facts = [i.facts for i in await self.store.get_many(storm.incidents)]
        storm.shared = shared_facts(all_facts)
        await self.store.save_storm(storm, self.policy.storm_window_s)
        for incident in batch:
            async with self.store.site_lock(incident.site):
                fresh = await self.store.get(incident.id) or incident
                fresh.channel, fresh.root_ts = storm.channel, storm.root_ts
                fresh.own_root, fresh.storm_id = False, storm.id
                await self.store.save(fresh)
        if self.notifier is None:
            return
        self.storm_changed(storm.id)
        if newcomers and len(storm.incidents) > len(batch):  # joined a storm already posted
            note = messages.also_failing_note(newcomers)
            await self._safe(self.notifier.post(storm.channel, note, storm.root_ts))

    # -- the diagnosis in the alert's thread ----------------------------------------------------
    async def diagnose(self, incident_id: str, *, fresh: bool = False) -> None:
        """Show the site's diagnosis in the incident's thread: the site's run under way or
        just over (its flight, which `/502`s share too), else a new one through the carrier.
        ``fresh`` (*Re-run*): always a new run, which becomes the site's flight."""
        incident = await self.store.get(incident_id)
        if incident is None or not incident.root_ts or self.carrier is None:
            return
        try:
            ctx = await self._context(incident)
        except (TargetRefused, BadTarget) as exc:
            incident.diagnosis = f"not diagnosed: {exc}"
            await self.store.save(incident)
            await self.refresh_root(incident, storm=False)
            return
        url = ctx.target.url
        request = DiagnosisRequest.new(ctx, origin={**diagnosis_origin(incident), "flight": url})
        # Diagnosing before the run is queued: an in-process run may end before submit returns.
        incident.diagnosis, incident.diagnosis_id = "diagnosing", request.id
        incident.diagnosis_requested_at = request.created_at
        incident.cause = incident.cause_summary = incident.waiting_since = None
        await self.store.save(incident)
        if self.flights is None:
            await self.carrier.submit(request)
        else:
            # Remembered before it is queued: a `/502` joining the run reads its steps.
            if fresh:
                await remember_request(self.flights.state, request)
                joined = await self.flights.fresh(request, url)
            else:
                joined = await self.flights.join_with(url, request)
            if not joined.started:
                await self._share(incident.id, request.id, joined)
                return
        await self.refresh_root(incident, storm=False)

    async def _context(self, incident: Incident) -> ProbeContext:
        """What the incident's diagnosis probes (TargetRefused, BadTarget: it cannot be)."""
        if incident.context:
            return ProbeContext.from_dict(incident.context, self.settings)
        # The site by its name: sites sharing an address (ports, paths) stay apart.
        known = self.settings.site_named(incident.site) is not None
        return await prepare(incident.site if known else incident.url, self.settings)

    async def _share(self, incident_id: str, asked: str, joined: Joined) -> None:
        """The incident shows a run it did not start: the site's flight (a `/502`'s, or an
        earlier alert's within the window). Its thread becomes one of the run's sharers and
        is caught up; a run already over gives its verdict now (else the sink gives it)."""
        assert self.flights is not None
        state = self.flights.state
        incident = await self.store.get(incident_id)
        if incident is None:
            return
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id)
            if incident is None or incident.diagnosis_id != asked:
                return  # a newer run, or its verdict, came meanwhile
            incident.diagnosis_id = joined.diagnosis_id
            incident.diagnosis_requested_at = joined.started_at
            await self.store.save(incident)
        quiet = bool(incident.storm_id)  # a grouped alert's site: kept, not posted
        if not quiet and incident.channel and incident.root_ts:
            await state.add_sharer(joined.diagnosis_id, incident.channel, incident.root_ts)
            if self.show_run is not None:
                await self.show_run(
                    joined.diagnosis_id, joined.steps, incident.channel, incident.root_ts
                )
        doc = await state.diagnosis_doc(joined.diagnosis_id)
        if doc is None:
            await self.refresh_root(incident, storm=False)
            return
        verdict = Diagnosis.from_dict(doc).verdict
        await self.record_verdict(
            incident.id,
            verdict.cause.value,
            verdict.summary,
            diagnosis_id=joined.diagnosis_id,
            requested_at=joined.started_at,
            doc=doc,
        )

    async def record_verdict(
        self,
        incident_id: str,
        cause: str,
        summary: str | None,
        *,
        diagnosis_id: str | None = None,
        requested_at: float | None = None,
        doc: dict[str, Any] | None = None,
    ) -> None:
        """The verdict arrived (``Incidents.diagnosed``, called by ``bot.alerts.sink``, or a
        run joined after it ended): show it on the root.

        With ``diagnosis_id`` that diagnosis becomes the incident's latest (what *Escalate*
        posts), also when it was not started here: a `/502`'s run the incident joined
        (bot.flights). A run older than the latest, finishing late,
        changes nothing. ``doc`` (the whole diagnosis) is kept for `show SITE`: a grouped
        alert's sites show only their cause until someone asks."""
        incident = await self.store.get(incident_id)
        if incident is None:
            return
        async with self.store.site_lock(incident.site):
            incident = await self.store.get(incident_id) or incident
            if diagnosis_id is not None and diagnosis_id != incident.diagnosis_id:
                latest = incident.diagnosis_requested_at
                if requested_at is not None and latest is not None and requested_at < latest:
                    return
                incident.diagnosis_id, incident.diagnosis_requested_at = diagnosis_id, requested_at
            incident.diagnosis, incident.cause, incident.cause_summary = "diagnosed", cause, summary
            await self.store.save(incident)
            if doc is not None:
                await self.store.save_diagnosis(incident.id, doc)
        await self.refresh_root(incident)

    # -- keeping the thread up to date ---------------------------------------------------------
    async def note(self, incident: Incident, note: str) -> None:
        if self.notifier is not None and incident.channel and incident.root_ts:
            await self._safe(self.notifier.post(incident.channel, note, incident.root_ts))

    async def refresh_root(self, incident: Incident, *, storm: bool = True) -> None:
        """Rewrite the alert's root; a storm member's change (its state, its verdict) rewrites
        the grouped root instead, paced (``storm_changed``)."""
        if storm and not incident.own_root and incident.storm_id:
            self.storm_changed(incident.storm_id)
            return
        if (
            self.notifier is None
            or not incident.own_root
            or not incident.channel
            or not incident.root_ts
        ):
            return
        mute = await self.store.muted(incident.site)
        root = messages.root_text(incident, mute, self.clock())
        await self._safe(self.notifier.update(incident.channel, incident.root_ts, root))

    # -- a storm's root and group replies, paced ----------------------------------------------
    def storm_changed(self, storm_id: str) -> None:
        """Something on the storm's table changed: rewrite it soon. chat.update is Tier 3
        (about 50 a minute for the whole workspace), so a storm's root and group replies are
        rewritten at most once per ``STORM_REFRESH_S`` across every process (a slot in Redis),
        showing the latest state; changes in between wait for the next slot."""
        self._dirty.add(storm_id)
        if storm_id not in self._pacers:
            self._pacers[storm_id] = asyncio.create_task(
                self._pace(storm_id), name=f"storm-refresh-{storm_id}"
            )

    async def _pace(self, storm_id: str) -> None:
        try:
            while storm_id in self._dirty:  # no await between this test and leaving
                wait_s = await self.store.claim_storm_slot(storm_id, STORM_REFRESH_S)
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                    continue
                self._dirty.discard(storm_id)
                if not await self._refresh_storm(storm_id):
                    self._dirty.add(storm_id)  # a Slack call failed: the next slot tries again
        finally:
            del self._pacers[storm_id]

    async def drain(self) -> None:
        """Wait until every pending storm rewrite is done (a process stopping, the tests)."""
        while self._pacers:
            await asyncio.gather(*list(self._pacers.values()), return_exceptions=True)

    async def _refresh_storm(self, storm_id: str) -> bool:
        """Rewrite the storm's table and its cause groups' replies (one per cause, posted when
        the group forms, rewritten when it grows; see GROUP_UPDATE_EVERY_S). False when a
        Slack call failed or a group's rewrite waits for a later slot."""
        storm = await self.store.get_storm(storm_id)
        if storm is None or self.notifier is None:
            return True
        async with self.store.storm_refresh_lock(storm_id):
            members = await self.store.get_many(storm.incidents)
            root = messages.storm_message(storm, members, self.clock())
            ok = await self._safe(self.notifier.update_message(storm.channel, storm.root_ts, root))
            shown = await self.store.storm_groups(storm_id)
            final = all(messages.accounted_for(i) for i in members)
            since = time.monotonic() - self._group_updated_at.get(storm_id, -GROUP_UPDATE_EVERY_S)
            rewrites = len(shown) if final else int(since >= GROUP_UPDATE_EVERY_S)
            for cause, group in cause_groups(members):
                text = messages.group_reply(cause, group, cause_title(cause))
                digest = hashlib.sha1(text.encode()).hexdigest()[:12]
                ts, was = shown.get(cause, ("", ""))
                if ts and was == digest:
                    continue
                if ts and rewrites <= 0:
                    ok = False  # rewritten in a later slot
                    continue
                try:
                    if ts:
                        rewrites -= 1
                        self._group_updated_at[storm_id] = time.monotonic()
                        await self.notifier.update(storm.channel, ts, text)
                    else:
                        key = f"{storm_id}:group:{cause}"
                        ts = await self.notifier.post(storm.channel, text, storm.root_ts, key=key)
                except SLACK_ERRORS as exc:
                    log.error("storm %s: the %s group's reply failed: %s", storm_id, cause, exc)
                    ok = False
                    continue
                await self.store.save_storm_group(storm_id, cause, ts, digest)
        return ok

    @staticmethod
    async def _safe(call: Awaitable[Any]) -> bool:
        """A Slack failure (after the client's retries) must not undo a state change."""
        try:
            await call
        except SLACK_ERRORS as exc:
            log.error("Slack call failed: %s", exc)
            return False
        return True


def cause_groups(members: list[Incident]) -> list[tuple[str, list[Incident]]]:
    """The diagnosed sites still failing, by cause: the largest group first."""
    groups: dict[str, list[Incident]] = {}
    for incident in members:
        if incident.state == OPEN and incident.diagnosis == "diagnosed" and incident.cause:
            groups.setdefault(incident.cause, []).append(incident)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def cause_title(cause: str) -> str | None:
    """What a cause means, in a few words (docs/causes.md has the rest)."""
    try:
        return CATALOGUE[Cause(cause)].title
    except ValueError:
        return None
