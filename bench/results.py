"""The bench's results file: the machine it ran on (CPUs, RAM, load, Python, nginx, Redis,
BIND), the figures of each part, as JSON and as a small markdown table for the README."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.lab import REPO


def _version(argv: list[str], pattern: str) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else None


def _cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _ram_gib() -> float | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def machine() -> dict[str, Any]:
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], r"(\w+)")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "load_avg_at_start": [round(n, 2) for n in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "redis": _version(["redis-server", "--version"], r"v=(\S+)"),
        "bind": _version(["named", "-v"], r"BIND (\S+)"),
        "commit": commit,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)


def _row(values: list[Any]) -> str:
    return "| " + " | ".join(_cell(v) for v in values) + " |"


def _rss(peaks: dict[str, float | None]) -> str:
    workers = [v for k, v in peaks.items() if k != "web" and v is not None]
    return f"web {_cell(peaks.get('web'))}, workers ≤ {_cell(max(workers, default=None))}"


def markdown(results: dict[str, Any]) -> str:
    """The figures as markdown tables (the README's "Benchmark" section shows them)."""
    m = results["machine"]
    lines = [
        f"Machine: {m['cpus']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, load "
        f"{m['load_avg_at_start']} at start; Python {m['python']}, nginx {m['nginx']}, "
        f"Redis {m['redis']}, BIND {m['bind']}; commit {m['commit']}, {m['at']}; "
        f"plan `{results['plan']['name']}`, {results['took_s']} s in all.",
        "",
    ]
    parts = results["parts"]
    if "ack" in parts:
        lines += [
            "**a. Ack latency** of signed `/502` (web process, 1 worker, open loop):",
            "",
            "| rate /s | requests | p50 ms | p99 ms | max ms | not 200 | ≥ 3 s |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in parts["ack"]["phases"]:
            lines.append(
                _row(
                    [
                        p["rate_per_s"],
                        p["requests"],
                        p["p50_ms"],
                        p["p99_ms"],
                        p["max_ms"],
                        p["not_200"],
                        p["over_3s"],
                    ]
                )
            )
        lines.append("")
    if "runbook" in parts:
        r = parts["runbook"]
        lines += [
            f"**b. Time to verdict** (median of {r['rounds']}; verdict {', '.join(r['causes'])}):",
            "",
            "| runbook by hand (machine time) | `badgateway diagnose` | `/502` in Slack, queue "
            "mode | terminal ÷ runbook | Slack ÷ runbook |",
            "|---|---|---|---|---|",
            _row(
                [
                    f"{r['runbook_s']} s",
                    f"{r['terminal_s']} s (engine {r['terminal_engine_s']} s)",
                    f"{r['slack_s']} s",
                    r["terminal_to_runbook"],
                    r["slack_to_runbook"],
                ]
            ),
            "",
        ]
    if "storm" in parts:
        lines += [
            "**c. Storm** (one grouped Alertmanager notification; the time includes the "
            f"{parts['storm'][0]['storm_hold_s']} s storm hold before the root is posted):",
            "",
            "| sites | workers | all accounted for | posts | updates | 429s (unhonoured) "
            "| peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in parts["storm"]:
            lines.append(
                _row(
                    [
                        s["sites"],
                        s["workers"],
                        f"{_cell(s['accounted_for_s'])} s "
                        f"({_cell(s.get('accounted_after_root_s'))} s after the root)",
                        s["posts"],
                        s["updates"],
                        f"{s['refused_429']} ({s['unhonoured_429']})",
                        _rss(s["peak_rss_mib"]),
                    ]
                )
            )
        lines.append("")
    if "askers" in parts:
        a = parts["askers"]
        lines += [
            f"**d. {a['channels']} × `/502` from {a['channels']} channels** "
            f"(queue mode, {a['workers']} worker processes):",
            "",
            "| threads complete | after | roots final after | replies | runs | duplicates "
            "| posts | updates | 429s (unhonoured) |",
            "|---|---|---|---|---|---|---|---|---|",
            _row(
                [
                    f"{a['threads_complete']} of {a['channels']}",
                    f"{_cell(a['threads_complete_s'])} s",
                    f"{_cell(a['roots_final_s'])} s",
                    f"{a['replies']} of {a['replies_expected']}",
                    a["diagnosis_runs"],
                    a["duplicates"],
                    a["posts"],
                    a["updates"],
                    f"{a['refused_429']} ({a['unhonoured_429']})",
                ]
            ),
            "",
        ]
    lines += [
        "**e. Enqueue → start** of the jobs (the queue's own timestamps), per part:",
        "",
        "| part | jobs | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name, e in enqueue_to_start(parts).items():
        lines.append(_row([name, e["jobs"], e["p50_ms"], e["p99_ms"], e["max_ms"]]))
    return "\n".join(lines) + "\n"


def enqueue_to_start(parts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Part e: each part's enqueue-to-start figures, by part (and storm worker count)."""
    found: dict[str, dict[str, Any]] = {}
    for name, part in parts.items():
        for one in part if isinstance(part, list) else [part]:
            workers = one.get("workers")
            label = f"{name} ({workers} worker{'s' if workers != 1 else ''})" if workers else name
            found[label] = one["enqueue_to_start"]
    return found
