"""The benchmark runs: `python -m bench --smoke` (every part, tiny: a few slash commands, a
5-site storm) against the real servers, and writes a results file of the documented shape.
No timing is asserted; the figures are what the bench is for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.deployment import percentile
from tests.lab import REPO


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0.99) == 3.0  # p99 of a few values is the largest
    assert percentile([], 0.5) is None


def _spread(figures: dict[str, Any]) -> None:
    assert set(figures) >= {"jobs", "p50_ms", "p99_ms", "max_ms"}
    if figures["jobs"]:
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_smoke_run_writes_every_part_to_the_results_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (tmp_path / "latest.json").exists()  # a full run's figures stay as they are
    results = json.loads((tmp_path / "smoke.json").read_text(encoding="utf-8"))

    machine = results["machine"]
    assert machine["cpus"] >= 1 and machine["ram_gib"] > 0
    assert machine["nginx"] and machine["redis"] and machine["python"]
    assert results["plan"]["name"] == "smoke"
    parts = results["parts"]
    assert list(parts) == ["ack", "runbook", "storm", "askers"]

    phases = parts["ack"]["phases"]
    assert [(p["rate_per_s"], p["requests"]) for p in phases] == [(5.0, 2), (20.0, 3)]
    assert all(p["not_200"] == 0 and 0 < p["p50_ms"] <= p["p99_ms"] for p in phases)

    runbook = parts["runbook"]
    assert runbook["causes"] == ["upstream_refused"]  # the bot and the terminal agree
    assert runbook["slack_verdicts"] == "1 of 1"
    assert runbook["terminal_to_runbook"] > 0 and runbook["slack_to_runbook"] > 0
    assert any(c.startswith("dig @127.0.0.1") for c in runbook["runbook"])

    [storm] = parts["storm"]
    assert (storm["sites"], storm["workers"], storm["roots"]) == (5, 1, 1)
    assert storm["accounted_for_s"] is not None and storm["unhonoured_429"] == 0
    assert 0 < storm["accounted_after_root_s"] <= storm["accounted_for_s"]
    assert storm["peak_rss_mib"]["web"] > 0 and storm["peak_rss_mib"]["w1"] > 0

    askers = parts["askers"]
    assert askers["threads_complete"] == askers["channels"] == 2
    assert askers["diagnosis_runs"] == 1 and askers["duplicates"] == 0
    assert askers["unhonoured_429"] == 0

    waits = results["enqueue_to_start"]
    assert set(waits) == {
        "ack (1 worker)",
        "runbook (1 worker)",
        "storm (1 worker)",
        "askers (1 worker)",
    }
    for figures in waits.values():
        _spread(figures)
    assert waits["storm (1 worker)"]["jobs"] >= 5  # a job per site, its steps run inside it
    table = (tmp_path / "smoke.md").read_text(encoding="utf-8")
    for heading in ("Ack latency", "Time to verdict", "Storm", "from 2 channels", "Enqueue"):
        assert heading in table
