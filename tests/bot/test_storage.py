"""bot.storage: one key scheme and one record format (the lock: tests/bot/test_state_lock.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from badgateway.bot import storage


@dataclass
class _Record:
    name: str
    count: int = 0


def test_every_key_has_one_prefix() -> None:
    assert storage.key("diag", "d1", "results") == "bgw:diag:d1:results"
    assert storage.key("alert", "lock", "site", "shop").startswith(storage.prefix())


def test_records_round_trip_and_drop_unknown_fields() -> None:
    assert storage.load(_Record, storage.dump(_Record("a", 2))) == _Record("a", 2)
    newer = json.dumps({"name": "b", "count": 1, "added_later": True})
    assert storage.load(_Record, newer) == _Record("b", 1)
    assert storage.from_record(_Record, {"name": "c"}) == _Record("c")
