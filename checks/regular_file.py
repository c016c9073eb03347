"""Open only regular files: the bot reads paths people write (a sites file, ``.env``, a
site's logs), and a FIFO, a device or a directory there must be reported, not waited on."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class NotARegularFile(OSError):
    """A path names a FIFO, a device, a directory or a socket: nothing the bot reads."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, as a person says it ("a FIFO")."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading, which must be a regular file (raises NotARegularFile)."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    f = os.fdopen(fd, "rb")
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        raise NotARegularFile(errno.EINVAL, f"{file_kind(mode)}, not a regular file")
    return f


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Raises OSError (NotARegularFile for a FIFO, device or directory; EFBIG when too long).
    """
    with open_regular_file(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes")
    return data
