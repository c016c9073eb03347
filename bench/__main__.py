"""The benchmark, in one command: `scripts/bench` (or `.venv/bin/python -m bench`).

Everything on loopback, every server real and stopped at the end: redis-server, nginx in
front of misbehaving upstreams, BIND, the Slack Web API stand-in enforcing Slack's rate
limits, and the bot as it is deployed in queue mode (`badgateway serve` and `badgateway
worker` processes). The parts, each in a fresh deployment:

  a. ack latency of signed `/502` slash commands at rising rates      (bench/ack_latency.py)
  b. time to verdict beside a curl/dig/nc runbook, as a ratio         (bench/runbook.py)
  c. a 200-site storm with 1 and then 4 workers                       (bench/queue_storm.py)
  d. 50 `/502` from 50 channels in queue mode                         (bench/queue_askers.py)
  e. enqueue-to-start p50/p99 of the jobs of each part

Writes RESULTS/latest.json and RESULTS/latest.md (default bench/results/) and prints the
markdown. `--smoke` runs a tiny plan (a few requests, a 5-site storm, the parts at once) in
well under a minute and writes RESULTS/smoke.json|md instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import ack_latency, queue_askers, queue_storm, runbook
from bench.plan import FULL, SMOKE, Plan
from bench.results import enqueue_to_start, machine, markdown
from bench.stack import Stack, running_stack

Part = Callable[[Stack, Path, Plan], Awaitable[Any]]
PARTS: dict[str, Part] = {
    "ack": ack_latency.run,
    "runbook": runbook.run,
    "storm": queue_storm.run,
    "askers": queue_askers.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


async def run(plan: Plan, name: str, parts: list[str], directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "plan": {"name": name, **asdict(plan)},
        "parts": {},
    }
    started = time.monotonic()
    with running_stack(directory / "stack", plan.storm_sites) as stack:

        async def one(part: str) -> None:
            part_started = time.monotonic()
            print(f"bench: part {part} …", flush=True)
            results["parts"][part] = await PARTS[part](stack, directory / part, plan)
            print(f"bench: part {part} took {time.monotonic() - part_started:.0f} s", flush=True)

        if plan.parts_at_once:
            await asyncio.gather(*(one(part) for part in parts))
        else:
            for part in parts:
                await one(part)
        results["parts"] = {part: results["parts"][part] for part in parts}  # in plan order
    results["enqueue_to_start"] = enqueue_to_start(results["parts"])
    results["took_s"] = round(time.monotonic() - started)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny plan (seconds, not minutes)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, in this order by default: {','.join(PARTS)}",
    )
    parser.add_argument("--storm-sites", type=int, help="sites in the storm (5 to 500)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where latest.json|md (smoke.json|md) go"
    )
    parser.add_argument(
        "--work", type=Path, help="keep the deployments (process logs, Redis) in this new folder"
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"unknown part(s) {', '.join(unknown) or '(none)'}; one of {', '.join(PARTS)}")
    plan = SMOKE if args.smoke else FULL
    if args.storm_sites is not None:
        plan = replace(plan, storm_sites=max(5, min(500, args.storm_sites)))
    name = "smoke" if args.smoke else "full"
    if args.work is not None:  # to read what the processes logged afterwards
        args.work.mkdir(parents=True)
        results = asyncio.run(run(plan, name, parts, args.work))
    else:
        with tempfile.TemporaryDirectory(prefix="bgw-bench-") as tmp:
            results = asyncio.run(run(plan, name, parts, Path(tmp)))
    # A smoke run never replaces the figures of a full one (the README quotes those).
    stem = "smoke" if args.smoke else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
