"""Read the recent end of one log and tally what it says, per cause, for one site.

The logs step decides what the tallies mean; this module only reads: the tail of the file,
the records inside the time window, each classified by its format's parser and given to its
owner (``checks.log_owner``). A tally keeps apart the diagnosis's own requests, badgateway's
other probes (other diagnoses, monitoring) and users' requests, because "4 of our 4 requests
failed this way just now" is stronger than "some request failed this way ten minutes ago".
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from badgateway.checks.log_owner import LineOwners, Owner
from badgateway.checks.logparse import FORMATS, LogLine, classifier, detect_format, record_splitter
from badgateway.checks.model import Cause
from badgateway.checks.redact import redact
from badgateway.checks.regular_file import open_regular_file
from badgateway.checks.settings import LogSource

TAIL_BYTES = 2 * 1024 * 1024  # only the recent end of a log is read
MAX_SAMPLES = 3
SAMPLE_CHARS = 500
ANOTHER_SITE = "another site"  # an other site's line that names nothing more telling


def iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Tally:
    """Lines of one log that point at one cause (or at none: the unclassified errors)."""

    count: int = 0
    own: int = 0  # lines about this diagnosis's own requests
    probes: int = 0  # lines about badgateway's other requests (a _bgw mark of another run)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    # The newest records, oldest first, as read: redacted only when shown (``samples``), so
    # that a busy log's thousands of lines are not each redacted to keep three.
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    whats: Counter[str] = field(default_factory=Counter)
    upstreams: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)  # application files blamed

    @property
    def users(self) -> int:
        return self.count - self.own - self.probes

    def add(self, record: str, parsed: LogLine, when: datetime, own: bool) -> None:
        self.count += 1
        if own:
            self.own += 1
        elif parsed.mark:
            self.probes += 1
        self.first_seen = self.first_seen or when
        self.last_seen = when
        self.recent.append(record.strip())
        if parsed.what:
            self.whats[parsed.what] += 1
        if parsed.upstream:
            self.upstreams[parsed.upstream] += 1
        if parsed.source:
            self.sources[parsed.source] += 1

    @property
    def samples(self) -> list[str]:
        """The newest lines, redacted, oldest first."""
        return [redact(record)[:SAMPLE_CHARS] for record in self.recent]

    @property
    def upstream(self) -> str | None:
        return redact(self.upstreams.most_common(1)[0][0]) if self.upstreams else None

    @property
    def source(self) -> str | None:
        return self.sources.most_common(1)[0][0] if self.sources else None

    @property
    def what(self) -> str:
        return self.whats.most_common(1)[0][0] if self.whats else "error lines"

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "own": self.own,
            "probes": self.probes,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "samples": self.samples,
            "whats": dict(self.whats),
            "upstreams": dict(self.upstreams),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tally:
        return cls(
            count=int(d["count"]),
            own=int(d.get("own", 0)),
            probes=int(d.get("probes", 0)),
            first_seen=_parse_time(d.get("first_seen")),
            last_seen=_parse_time(d.get("last_seen")),
            recent=deque(d.get("samples", []), maxlen=MAX_SAMPLES),
            whats=Counter(d.get("whats", {})),
            upstreams=Counter(d.get("upstreams", {})),
            sources=Counter(d.get("sources", {})),
        )


@dataclass
class LogScan:
    """What one log's recent lines say about one site."""

    path: str
    format: str | None
    detected: bool
    empty: bool = False  # nothing logged at all
    bytes_read: int = 0
    lines_read: int = 0
    lines_in_window: int = 0
    causes: dict[Cause, Tally] = field(default_factory=dict)  # first-hand failures
    consequences: dict[Cause | None, Tally] = field(default_factory=dict)
    unclassified: Tally = field(default_factory=Tally)
    # Other sites' failing lines in the same log: site (or Host) -> cause (or "error") -> n.
    others: dict[str, Counter[str]] = field(default_factory=dict)
    own_seen: set[str] = field(default_factory=set)  # marks of this diagnosis's requests seen
    # The upstreams this diagnosis's own requests were sent to, as the lines about them name
    # them (an access line's $upstream_addr, an error line's upstream): address -> lines.
    own_upstreams: Counter[str] = field(default_factory=Counter)
    request_log: bool = False  # its records name every request (an access log), not only errors

    def to_dict(self) -> dict[str, Any]:
        """JSON, so that a scan made on the machine holding the log can travel."""
        return {
            "path": self.path,
            "format": self.format,
            "detected": self.detected,
            "empty": self.empty,
            "bytes_read": self.bytes_read,
            "lines_read": self.lines_read,
            "lines_in_window": self.lines_in_window,
            "causes": {c.value: t.to_dict() for c, t in self.causes.items()},
            "consequences": {
                (c.value if c else ""): t.to_dict() for c, t in self.consequences.items()
            },
            "unclassified": self.unclassified.to_dict(),
            "others": {label: dict(counts) for label, counts in self.others.items()},
            "own_seen": sorted(self.own_seen),
            "own_upstreams": dict(self.own_upstreams),
            "request_log": self.request_log,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogScan:
        return cls(
            path=str(d["path"]),
            format=d.get("format"),
            detected=bool(d.get("detected")),
            empty=bool(d.get("empty")),
            bytes_read=int(d.get("bytes_read", 0)),
            lines_read=int(d.get("lines_read", 0)),
            lines_in_window=int(d.get("lines_in_window", 0)),
            causes={Cause(c): Tally.from_dict(t) for c, t in d.get("causes", {}).items()},
            consequences={
                (Cause(c) if c else None): Tally.from_dict(t)
                for c, t in d.get("consequences", {}).items()
            },
            unclassified=Tally.from_dict(d["unclassified"]),
            others={label: Counter(c) for label, c in (d.get("others") or {}).items()},
            own_seen=set(d.get("own_seen") or ()),
            own_upstreams=Counter(d.get("own_upstreams") or {}),
            request_log=bool(d.get("request_log")),
        )

    def claims(self) -> dict[Cause, Tally]:
        """The causes this log is evidence for. Consequences ("no live upstreams") claim
        their cause only when the log shows no first-hand failure that explains them."""
        if self.causes:
            return dict(self.causes)
        return {c: t for c, t in self.consequences.items() if c is not None}


def read_tail(path: str, limit: int = TAIL_BYTES) -> tuple[list[str], int]:
    """The complete lines in the last ``limit`` bytes of ``path``, and the bytes read."""
    with open_regular_file(path) as f:
        start = max(0, os.fstat(f.fileno()).st_size - limit)
        f.seek(start)
        data = f.read(limit)
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the seek
    return lines, len(data)


def scan_lines(
    lines: Iterable[str],
    fmt: str,
    since: datetime,
    path: str = "",
    detected: bool = False,
    owners: LineOwners | None = None,
) -> LogScan:
    """Classify the records written at or after ``since``; with ``owners``, keep only the
    site's (and unattributable) lines and count the others apart."""
    scan = LogScan(path=path, format=fmt, detected=detected)
    classify = classifier(fmt)
    last_when: datetime | None = None
    for record in record_splitter(fmt)(lines):
        parsed = classify(record)
        if parsed is None:
            continue
        # A line without a time stamp (a continuation) belongs with the line before it.
        when = parsed.when or last_when
        last_when = when
        if when is None or when < since:
            continue
        scan.lines_in_window += 1
        scan.request_log = scan.request_log or parsed.status is not None
        own = owners.own_request(parsed) if owners else None
        if own:
            scan.own_seen.add(own)
            owner, label = Owner.SITE, None
            # A consequence ("no live upstreams") names the pool, not a server it tried.
            if parsed.upstream and not parsed.secondary:
                scan.own_upstreams.update(parsed.upstream.split(", "))
        else:
            owner, label = owners.owner(parsed) if owners else (Owner.UNKNOWN, None)
        if owner is Owner.OTHER:
            if parsed.cause is not None or parsed.is_error:
                counts = scan.others.setdefault(label or ANOTHER_SITE, Counter())
                counts[parsed.cause.value if parsed.cause else "error"] += 1
            continue
        if parsed.secondary:
            scan.consequences.setdefault(parsed.cause, Tally()).add(record, parsed, when, bool(own))
        elif parsed.cause is not None:
            scan.causes.setdefault(parsed.cause, Tally()).add(record, parsed, when, bool(own))
        elif parsed.is_error:
            scan.unclassified.add(record, parsed, when, bool(own))
    return scan


def scan_log(source: LogSource, since: datetime, owners: LineOwners | None = None) -> LogScan:
    lines, size = read_tail(source.path)
    if not any(line.strip() for line in lines):
        # Nothing logged at all: quiet, whatever the format would have been.
        return LogScan(path=source.path, format=source.format, detected=False, empty=True)
    fmt = source.format or detect_format(lines)
    if fmt is None or fmt not in FORMATS:
        return LogScan(path=source.path, format=None, detected=True, bytes_read=size)
    scan = scan_lines(lines, fmt, since, source.path, source.format is None, owners)
    scan.bytes_read, scan.lines_read = size, len(lines)
    return scan
