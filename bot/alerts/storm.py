"""Storms: many sites failing at once get one grouped alert that says what they share.

Slack posts about one message per second per channel, and fifty alert threads bury the
one fact that matters: the sites share a failing thing (an upstream, an address, an edge).
Each failing probe records facts about its site (``facts``); when a batch of incidents is
at least the storm threshold, they go into one thread whose root names the facts common to
most of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

# fact kind → how the root message names it
FACT_LABELS: dict[str, str] = {
    "upstream": "the same upstream",
    "address": "the same resolved address",
    "answer": "the same resolver answer",
    "edge": "the same provider/edge (Server header)",
    "failure": "the same failure",
}
SHARED_FRACTION = 0.5  # a fact held by at least this share of the sites is "shared"


def shared_facts(facts: Sequence[dict[str, list[str]]]) -> list[str]:
    """What most of the sites have in common, e.g. 'the same upstream 10.0.0.5:8080 (48 of 50)'."""
    total = len(facts)
    if total < 2:
        return []
    found: list[str] = []
    for kind, label in FACT_LABELS.items():
        counts: Counter[str] = Counter()
        for site_facts in facts:
            counts.update(set(site_facts.get(kind, [])))
        if not counts:
            continue
        value, count = counts.most_common(1)[0]
        if count >= 2 and count >= SHARED_FRACTION * total:
            share = "all" if count == total else f"{count} of {total}"
            found.append(f"{label} {value} ({share})")
    return found


def is_storm(batch_size: int, threshold: int) -> bool:
    return threshold > 0 and batch_size >= threshold
