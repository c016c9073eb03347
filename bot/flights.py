"""One diagnosis per site at a time, whoever asks: `/502`, an alert, a re-check.

A site's run is its flight (bot.state.Flight, ``bgw:flight:{url}``): a request while it runs,
or within ``window_s`` after it ended, shares it instead of starting another. The Slack side
(`/502` threads) and the alerting side (an incident's diagnosis) both join through
``SiteFlights``, so an alert and fifty `/502`s for one site make one run; each shows it in its
own way (the threads that share it are the run's sharers, bot.slack.sink). *Re-run* is always
a fresh run, which becomes the site's flight (``fresh``).

A run limited to some of the site's places (`/502 shop from eu-west`) is a flight of its own,
keyed by the target and those places (``flight_key``): it never joins a run from every place,
nor one from other places, and a run from every place never joins it.

From places, who asks changes the verdict: a person's `/502` on a site that works from every
place is ``client_side`` (it fails where they are), while monitoring's or an alert's run of the
same site is healthy or transient. So on a site with places, a person's run and an alert's are
flights apart (an alert's thread never reads "it fails where you are"); without places they
share one run as before.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from badgateway.bot.pipeline import Carrier, DiagnosisRequest
from badgateway.bot.state import BotState, Flight
from badgateway.checks.context import ProbeContext

SHARE_WINDOW_S = 30.0  # bot.config.BotConfig.share_window_s
# Brings one thread up to date with a run, (diagnosis id, steps, channel, root_ts): what it
# posted before the thread joined, and its verdict if it is over (bot.slack.sink's ``show``).
ShowRun = Callable[[str, list[str], str, str], Awaitable[None]]


def limited_places(ctx: ProbeContext) -> tuple[str, ...]:
    """The places a run is limited to, when they are not all of its site's; () otherwise."""
    every = ctx.settings.vantages_for(ctx.target.site)
    return ctx.places if set(ctx.places) != set(every) else ()


def flight_key(ctx: ProbeContext) -> str:
    """The flight a run of ``ctx`` shares: its URL, and the places when it is limited to some
    (``https://shop/ from eu-west,us-east``: whatever order they were named in); a person's
    run from places apart from monitoring's (see the module's docstring)."""
    limited = limited_places(ctx)
    key = f"{ctx.target.url} from {','.join(sorted(limited))}" if limited else ctx.target.url
    # The asker's report decides client_side only where places give the other view.
    return f"{key} asked" if ctx.places and ctx.asker_reports_failure else key


@dataclass(frozen=True)
class Joined:
    """The run a request is shown: which, its steps, since when, and whether it started it."""

    diagnosis_id: str
    steps: list[str]
    started_at: float
    started: bool  # False: it joined a run already under way (or just over)


async def remember_request(state: BotState, request: DiagnosisRequest) -> None:
    """What a root message (or a joiner) needs to show a diagnosis before any result."""
    await state.record_request(request.id, {"steps": request.steps, "previous": request.previous})


class SiteFlights:
    def __init__(self, state: BotState, carrier: Carrier, window_s: float = SHARE_WINDOW_S) -> None:
        self.state = state
        self.carrier = carrier
        self.window_s = window_s

    async def join(self, url: str, new: Callable[[], Awaitable[DiagnosisRequest]]) -> Joined:
        """The site's run running or just over, else a new one (``new()``), queued."""
        async with self.state.flight_lock(url):
            flight = await self.state.flight(url)
            if flight is not None and flight.shareable(time.time(), self.window_s):
                doc = await self.state.request_doc(flight.diagnosis_id)
                if doc.get("steps"):
                    steps = list(doc["steps"])
                    return Joined(flight.diagnosis_id, steps, flight.started_at, started=False)
            request = await new()
            return await self._launch(request, url)

    async def join_with(self, url: str, request: DiagnosisRequest) -> Joined:
        """``join``, with the request already made (an alert's): remembered only if it
        becomes the site's run."""

        async def new() -> DiagnosisRequest:
            await remember_request(self.state, request)
            return request

        return await self.join(url, new)

    async def fresh(self, request: DiagnosisRequest, url: str) -> Joined:
        """Queue ``request`` as the site's new run, whatever runs now (*Re-run*). The caller
        has remembered it (``remember_request``), as ``join``'s ``new`` does."""
        async with self.state.flight_lock(url):
            return await self._launch(request, url)

    async def _launch(self, request: DiagnosisRequest, url: str) -> Joined:
        """Queue the run, then make it the site's flight (the caller holds the flight lock).
        In that order: a submit that fails (Redis gone) leaves no flight for later requests
        to join and wait on."""
        await self.carrier.submit(request)
        started_at = time.time()
        await self.state.save_flight(url, Flight(request.id, started_at))
        return Joined(request.id, request.steps, started_at, started=True)
