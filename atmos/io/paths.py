"""Checks on output paths, run before any work so that a bad path fails fast and leaves nothing.

One home for "can this be written here?": the forecast writer (``atmos rollout``), the trainer
(``output.dir``) and the file-writing commands call :func:`check_writable`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from atmos.errors import ConfigError

__all__ = ["check_writable", "human_bytes"]


def human_bytes(nbytes: float) -> str:
    """``1234567`` -> ``'1.23 MB'`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def check_writable(path: str | os.PathLike, what: str = "the output", *, nbytes: int = 0,
                   hint: str = "Choose another path", space_hint: str | None = None) -> Path:
    """Check that ``path`` (a file or folder to be created or replaced) can be written.

    Parameters
    ----------
    path : path
        What will be written.
    what : str
        How the message names it (e.g. ``"the output"``, ``"output.dir"``).
    nbytes : int
        Its expected size; compared with the free space of the file system (0: not checked).
    hint : str
        The fix the message suggests for a bad path (e.g. ``"Choose another --out"``).
    space_hint : str, optional
        The fix it suggests when space is short (default: ``hint``).

    Returns
    -------
    pathlib.Path
        The nearest existing folder at or above ``path``'s parent (where it will be created).

    Raises
    ------
    ConfigError
        The nearest existing ancestor is a file, is not writable by this user, or lacks the space.
    """
    p = Path(path).absolute()
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {what} {str(path)!r}: {str(parent)!r} is a file, not a folder. {hint}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write {what} {str(path)!r}: the folder {str(parent)!r} is not writable by this user. "
            f"{hint} (or fix the folder's permissions)."
        )
    if nbytes > 0:
        free = shutil.disk_usage(parent).free
        if nbytes > free:
            raise ConfigError(
                f"{what} {str(path)!r} would take up to {human_bytes(nbytes)} but {str(parent)!r} has "
                f"{human_bytes(free)} free. {space_hint or hint}."
            )
    return parent
