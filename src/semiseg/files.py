"""Files written whole or not at all: a kill, Ctrl-C or a full disk never leaves a torn file under its name."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional

from semiseg.errors import SemisegError


def temporary_beside(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: hidden, in its folder (a rename within one
    file system is atomic), named by this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_file(path: Path, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """An open temporary beside ``path`` that replaces it once written (and, ``durable``, synced to the disk,
    with its folder: a power cut keeps it too). On any failure the temporary is removed and ``path`` keeps its
    previous content; a disk error (full, quota, read-only) becomes one line naming the file instead of a
    chained traceback."""
    tmp = temporary_beside(path)
    try:
        with open(tmp, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        disk = os_error(e)
        if disk is None:
            raise
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        raise SemisegError(f"cannot write {path}: {disk.strerror or disk}{kept}") from None
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def os_error(e: BaseException) -> Optional[OSError]:
    """The operating system's error behind ``e``: torch.save reports a full disk as a RuntimeError raised while
    handling the OSError."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None
