"""Writing a forecast store on a thread of its own, overlapping the next model steps.

:class:`BackgroundWriter` hands each lead to a writer thread (a
:class:`~atmos.rollout.writer.ForecastWriter` used by that thread alone) through a queue of
at most ``depth`` leads, so memory stays flat (at most ``depth + 1`` leads in flight) and the
model computes lead ``k + 1`` while lead ``k`` is encoded and written (file writes and Blosc
release the GIL). The writes, their order and the progress attributes are the ForecastWriter's
own: the store is the one a synchronous run writes, byte for byte.

An error on the writer thread stops its writes (nothing after the failed lead is written, so
the store's progress never claims an unwritten lead) and is raised in the caller's thread at
its next :meth:`BackgroundWriter.write` or :meth:`BackgroundWriter.flush`, with a note naming
the lead and the store; the run then records the store ``failed``, never ``complete``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from atmos.errors import DataError

__all__ = ["BackgroundWriter"]


class BackgroundWriter:
    """A :class:`~atmos.rollout.writer.ForecastWriter` fed from a queue by a writer thread.

    Parameters
    ----------
    writer : ForecastWriter
        Used by the writer thread only, until :meth:`stop`.
    depth : int
        Leads the queue holds (the caller blocks when it is full).

    Attributes
    ----------
    completed : list of int
        Per initial time, the leads handed over (the writer's own ``completed`` trails it
        until they are written; after :meth:`flush` they are equal).
    """

    def __init__(self, writer: Any, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        self.writer = writer
        self.path = writer.path
        self.completed = list(writer.completed)
        self._queue: queue.Queue[tuple[int, int, Mapping[str, np.ndarray]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"atmos-writer[{self.path.name}]", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:  # after a failure nothing more is written (leads stay in order)
                    self._write(*item)
            finally:
                self._queue.task_done()

    def _write(self, i: int, k: int, values: Mapping[str, np.ndarray]) -> None:
        try:
            self.writer.write(i, k, values)
        except BaseException as err:  # raised again in the caller's thread
            err.add_note(
                f"(raised on the writer thread of {str(self.path)!r} while writing lead {k} of initial time #{i}; "
                f"leads 0..{self.writer.completed[i] - 1} of it are written)"
            )
            self._error = err

    def raise_error(self) -> None:
        """Raise the writer thread's error, if it had one."""
        if self._error is not None:
            raise self._error

    def write(self, init_index: int, lead_index: int, values: Mapping[str, np.ndarray]) -> None:
        """Hand one lead over (see :meth:`ForecastWriter.write`); ``values`` must not be changed
        afterwards. Raises an earlier error of the writer thread."""
        self.raise_error()
        if not self._thread.is_alive():
            raise DataError(f"the writer of {str(self.path)!r} is stopped; lead {lead_index} cannot be written.")
        if lead_index != self.completed[init_index]:
            raise DataError(
                f"lead {lead_index} of initial time #{init_index} written out of order "
                f"({self.completed[init_index]} leads are done)."
            )
        self._queue.put((int(init_index), int(lead_index), values))
        self.completed[init_index] = lead_index + 1

    def flush(self, *, raise_error: bool = True) -> None:
        """Wait until every lead handed over is written; then raise the thread's error, if any."""
        if self._thread.is_alive():
            self._queue.join()
        if raise_error:
            self.raise_error()

    def stop(self) -> None:
        """Write what is queued, end the thread (idempotent; errors stay for :meth:`raise_error`)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
