"""Exclusive ownership of an output store while it is written: a lock file beside it.

``StoreLock(path)`` owns ``{path}.lock`` (a sibling, so replacing the store never touches it),
created with ``O_CREAT | O_EXCL``: atomic on local disks and on NFS v3+/Lustre/GPFS, the file
systems of clusters. The file holds JSON ``{"host", "pid", "started"}``; its mtime is the
heartbeat, refreshed by :meth:`StoreLock.touch` after every lead written.

A lock is *stale* (and is taken over, with a warning) when

* it was written on this host by a process that no longer exists, or
* its heartbeat is older than ``stale_after`` seconds (default :data:`STALE_AFTER_S`; a writer
  on another node cannot be probed, so only its silence tells that it died).

Anything else is a live writer: :meth:`StoreLock.acquire` raises :class:`~atmos.errors.ConfigError`
naming the host, the process and the age of the heartbeat, so two writers never mix.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from atmos.errors import ConfigError

__all__ = ["STALE_AFTER_S", "StoreLock"]

#: Seconds without a heartbeat after which another host's lock counts as stale.
STALE_AFTER_S = 900.0
#: Lock files held by live StoreLock objects of this process.
_HELD: set[str] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class StoreLock:
    """Exclusive-writer lock of ``path`` (see the module docstring).

    Use as a context manager or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path: str | os.PathLike, stale_after: float = STALE_AFTER_S) -> None:
        p = Path(path)
        self.path = p.with_name(p.name + ".lock")
        self.stale_after = float(stale_after)
        self.held = False

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _stale(self, owner: dict[str, Any]) -> str | None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "gone"
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            if owner["pid"] == os.getpid():
                return None if str(self.path) in _HELD else "it was left by this process without a release"
            if not _pid_alive(owner["pid"]):
                return f"process {owner['pid']} on this host no longer exists"
            return None
        if age > self.stale_after:
            return f"no heartbeat for {age:.0f} s (> {self.stale_after:.0f} s)"
        if not owner and age > 5.0:  # an empty/corrupt lock left by a kill during its creation
            return "the lock file is empty or unreadable"
        return None

    def acquire(self) -> StoreLock:
        """Take the lock, or raise ConfigError if another live writer holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                why = self._stale(owner)
                if why is None:
                    age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0.0
                    raise ConfigError(
                        f"the output {str(self.path)[:-5]!r} is being written by another run (process "
                        f"{owner.get('pid', '?')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}, "
                        f"last heartbeat {age:.0f} s ago); wait for it to finish, choose another --out, or, if that "
                        f"run is dead, delete {str(self.path)!r}."
                    ) from None
                if why != "gone":
                    warnings.warn(f"taking over the stale lock {str(self.path)!r}: {why}.", stacklevel=2)
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(
                    {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, f
                )
            self.held = True
            _HELD.add(str(self.path))
            return self
        raise ConfigError(f"could not take the lock {str(self.path)!r} (it keeps reappearing); retry.")

    def touch(self) -> None:
        """Refresh the heartbeat."""
        if self.held:
            try:
                os.utime(self.path)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        if self.held:
            self.held = False
            _HELD.discard(str(self.path))
            if self._owner().get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
