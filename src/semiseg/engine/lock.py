"""One run per work_dir: a lock file holding its owner's PID and host.

Two runs writing into one folder replace each other's checkpoints and interleave their logs. The lock is
created atomically (a hard link of a complete file), so of two runs started at once exactly one gets it; the other
refuses with one line naming the owner. A lock left by a process that no longer exists on this host (a
SIGKILL, a power cut) is taken over with a note. A lock held from another host (a shared file system)
cannot be checked from here: the refusal says how to remove it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from semiseg.errors import SemisegError

LOCK_NAME = ".semiseg.lock"


class WorkDirLock:
    """Held from :meth:`acquire` to :meth:`release`; only the process that wrote it removes it."""

    def __init__(self, work_dir: Path) -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> "WorkDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # the second try follows the removal of a dead owner's lock
            if self._create():
                self.held = True
                return self
            owner = self._owner()
            if owner is not None and self._mine(owner):
                self.held = True  # this process's own (an earlier trainer in the same Python session)
                return self
            if owner is not None and not self._dead(owner):
                raise SemisegError(self._refusal(owner))
            what = f"PID {owner['pid']} on {owner['host']}" if owner else "an unreadable lock"
            print(f"note: {self.path.parent} was locked by a run that is gone ({what}); taking it over",
                  file=sys.stderr, flush=True)
            self.path.unlink(missing_ok=True)
        raise SemisegError(f"{self.path}: another run took the lock at the same moment; try again")

    def _create(self) -> bool:
        """The lock file appears whole or not at all: its content is written to a temporary first, then
        hard-linked into place (``link`` fails where the name exists), so no run ever reads a half-written
        lock of a live owner and takes it over."""
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                 "command": " ".join(sys.argv)}
        try:
            tmp.write_text(json.dumps(owner))
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise SemisegError(f"cannot write the lock {self.path}: {e.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _owner(self) -> Optional[dict]:
        try:
            owner = json.loads(self.path.read_text())
            ok = isinstance(owner, dict) and isinstance(owner.get("pid"), int) and isinstance(owner.get("host"), str)
            return owner if ok else None
        except (OSError, ValueError):
            return None  # written by something else: no run can own it

    @staticmethod
    def _mine(owner: dict) -> bool:
        return owner["host"] == socket.gethostname() and int(owner["pid"]) == os.getpid()

    @staticmethod
    def _dead(owner: dict) -> bool:
        if owner["host"] != socket.gethostname():
            return False  # another machine's process cannot be looked up from here
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    def _refusal(self, owner: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(owner.get("started", 0)))
        remote = owner["host"] != socket.gethostname()
        return (f"{self.path.parent} is in use by another run (PID {owner['pid']} on {owner['host']}, since {since}): "
                "choose another --work-dir" + (f", or delete {self.path} if that run is over" if remote else
                                               ", or wait for it to finish"))
