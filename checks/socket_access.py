"""Who may open a unix socket: the proxy's workers, not only the bot.

The bot often runs as root, and root connects to any socket. A php-fpm socket left at
``0660 root:root`` therefore "accepts connections" for the bot while nginx's ``www-data``
workers are refused (``13: Permission denied``). So after a connect succeeds, the socket's
owner and mode are compared with the users the web servers' worker processes run as, read
from /proc, where that can be told.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

# Process names of web servers and proxies whose workers open app sockets.
PROXY_PROCESSES = frozenset(
    {"nginx", "apache2", "httpd", "haproxy", "caddy", "varnishd", "cache-main", "lighttpd"}
)


@dataclass(frozen=True)
class Worker:
    """The user one kind of proxy process runs as."""

    process: str
    uid: int
    gids: frozenset[int]

    @property
    def user(self) -> str:
        return _user_name(self.uid)


class SocketAccessDict(TypedDict):
    """``SocketAccess`` as JSON."""

    mode: str
    owner: str
    group: str
    allowed: list[str]
    denied: list[str]


@dataclass
class SocketAccess:
    """A socket's owner and mode, and which proxy workers may open it."""

    mode: str  # "0660"
    owner: str
    group: str
    allowed: list[str] = field(default_factory=list)  # "nginx (www-data)"
    denied: list[str] = field(default_factory=list)

    def to_dict(self) -> SocketAccessDict:
        return {
            "mode": self.mode,
            "owner": self.owner,
            "group": self.group,
            "allowed": list(self.allowed),
            "denied": list(self.denied),
        }

    @property
    def shown(self) -> str:
        return f"{self.mode} {self.owner}:{self.group}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _status_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def proxy_workers(proc: Path = Path("/proc")) -> list[Worker]:
    """The distinct unprivileged users that web-server processes on this machine run as
    (their masters run as root and do not open the app's socket)."""
    found: dict[tuple[str, int], Worker] = {}
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fields = _status_fields((entry / "status").read_text())
        except OSError:  # the process ended meanwhile, or /proc is restricted
            continue
        name = fields.get("Name", "")
        if name not in PROXY_PROCESSES:
            continue
        try:
            uid = int(fields.get("Uid", "").split()[1])  # the effective uid
            gids = {int(fields.get("Gid", "").split()[1])}
            gids |= {int(g) for g in fields.get("Groups", "").split()}
        except (IndexError, ValueError):
            continue
        if uid != 0:
            found.setdefault((name, uid), Worker(name, uid, frozenset(gids)))
    return sorted(found.values(), key=lambda w: (w.process, w.uid))


def _may(info: os.stat_result, uid: int, gids: frozenset[int], bits: tuple[int, int, int]) -> bool:
    user_bit, group_bit, other_bit = bits
    if uid == info.st_uid:
        return bool(info.st_mode & user_bit)
    if info.st_gid in gids:
        return bool(info.st_mode & group_bit)
    return bool(info.st_mode & other_bit)


def may_open(path: str, uid: int, gids: frozenset[int]) -> bool:
    """Whether ``uid`` may connect to the socket at ``path``: search permission on every
    directory above it, write permission on the socket itself."""
    if uid == 0:
        return True
    target = Path(path)
    try:
        for directory in reversed(target.parents):
            searchable = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
            if not _may(os.stat(directory), uid, gids, searchable):
                return False
        return _may(os.stat(target), uid, gids, (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH))
    except OSError:
        return False


def socket_access(path: str, workers: list[Worker] | None = None) -> SocketAccess | None:
    """The socket's owner and mode, and which proxy workers may open it; None when the
    socket cannot be looked at."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    access = SocketAccess(
        mode=f"{stat.S_IMODE(info.st_mode):04o}",
        owner=_user_name(info.st_uid),
        group=_group_name(info.st_gid),
    )
    for worker in proxy_workers() if workers is None else workers:
        who = f"{worker.process} ({worker.user})"
        (access.allowed if may_open(path, worker.uid, worker.gids) else access.denied).append(who)
    return access
