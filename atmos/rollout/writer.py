"""Streaming Zarr writer for forecasts in the WeatherBench2 forecast layout.

The store is created up front with its full shape: every coordinate, the variables'
metadata and a NaN fill value, but no data chunks. Each lead is then written as it
is produced, one chunk per variable (chunks are ``(1 init, 1 lead, all members,
[all levels], whole grid)``), so memory does not grow with lead time and a lead
never shares a chunk with another.

Progress lives in the root attributes and is updated after each lead has been
written (the local zarr store replaces files atomically):

``atmos_completed_leads``
    list, per initial time, of how many leads (from lead 0, in order) are written;
``atmos_completed_steps``
    their sum;
``atmos_total_steps``
    ``n_init * n_lead``;
``atmos_status``
    ``running``, ``complete``, ``interrupted`` or ``failed: <reason>``;
``atmos_compression``
    JSON: the codec (lossless Blosc/Zstandard by default, :data:`atmos.io.compression.LOSSLESS`),
    the information fraction kept by bit rounding (``information``, None: lossless), and per
    variable the kept mantissa bits, max abs error, PSNR, bytes per value and ratio (sizes at close).

An interrupted rollout therefore leaves a store that opens with xarray, holds NaN
for the leads not written yet, and says how far it got; :meth:`ForecastWriter.open`
reads that back so that ``--resume`` writes only what is missing.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError, SourceError
from atmos.io.compression import StreamRounder, lossless_codec, spatial_axes, store_nbytes
from atmos.rollout.chunkfiles import ChunkFile, write_lead
from atmos.rollout.lock import StoreLock

__all__ = ["ForecastWriter", "read_progress"]

#: Default seconds between progress-attribute updates while writing (see ForecastWriter).
PROGRESS_INTERVAL = 1.0
#: Chunk keys ``c.<init>.<lead>.0...``: one flat file per lead and variable (zarr v3's default
#: ``c/<init>/<lead>/0/...`` makes a folder tree per lead, and creating folders costs more than
#: writing a 64x32 lead). Any zarr v3 reader reads the keys from the metadata.
CHUNK_KEYS = {"name": "default", "separator": "."}

_PROGRESS_KEYS = ("atmos_completed_leads", "atmos_completed_steps", "atmos_total_steps", "atmos_status")


def read_progress(path: str | os.PathLike) -> dict[str, Any]:
    """The progress attributes of a forecast store (see the module docstring).

    Raises
    ------
    SourceError
        No zarr store at ``path``, or it was not written by atmos rollout.
    """
    import zarr

    p = Path(path)
    if not p.exists():
        raise SourceError(f"no forecast store at {str(p)!r}; nothing to resume.")
    try:
        g = zarr.open_group(str(p), mode="r")
    except Exception as err:  # zarr raises several types for a non-store folder
        raise SourceError(f"{str(p)!r} is not a zarr store ({err}).") from err
    attrs = dict(g.attrs)
    missing = [k for k in _PROGRESS_KEYS if k not in attrs]
    if missing:
        raise SourceError(
            f"{str(p)!r} is not a forecast store written by atmos rollout (attributes {missing} are missing); "
            "choose another --out or pass --overwrite."
        )
    return attrs


class ForecastWriter:
    """Write a forecast store lead by lead.

    Use :meth:`create` for a new store and :meth:`open` to resume one.

    Parameters
    ----------
    path : path
        The zarr store.
    n_lead : int
        Leads per initial time.
    completed : list of int
        Leads already written per initial time.
    progress_interval : float
        Seconds between updates of the progress attributes (0: after every lead). Rewriting the
        consolidated metadata after every lead would cost more than writing the lead.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_lead: int,
        completed: list[int],
        lock: StoreLock | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        import zarr

        self.lock = lock
        if lock is not None:  # an abandoned writer (an exception, a dropped object) frees its store
            weakref.finalize(self, lock.release)
        self.path = Path(path)
        self.n_lead = int(n_lead)
        self.completed = [int(c) for c in completed]
        self.progress_interval = float(progress_interval)
        self._last_progress = float("-inf")
        with quiet_zarr():
            self._group = zarr.open_group(str(self.path), mode="r+")
        self._arrays: dict[str, Any] = {}
        self._direct: dict[str, ChunkFile | None] = {}  # chunk files written without zarr (chunkfiles)
        self.rounder = StreamRounder.from_attr(self._group.attrs.get("atmos_compression"))
        self._rounder_keys = len(self.rounder.keepbits)

    @property
    def information(self) -> float | None:
        """Fraction of the real information kept per variable (None: lossless)."""
        return self.rounder.information

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        template: xr.Dataset,
        *,
        overwrite: bool = False,
        encoding: Mapping[str, Mapping[str, Any]] | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
        information: float | None = None,
    ) -> ForecastWriter:
        """Create the store from a lazy ``template`` (full shape, dims ``time`` and
        ``prediction_timedelta`` first) without writing any data chunk.

        Every variable is compressed losslessly (:data:`atmos.io.compression.LOSSLESS`); with
        ``information`` in (0, 1] each is also bit-rounded to keep that fraction of its real
        information (:class:`atmos.io.compression.StreamRounder`; kept bits fixed on lead 0).

        Raises
        ------
        ConfigError
            The path exists and ``overwrite`` is False (the message suggests ``--resume``
            or ``--overwrite``).
        """
        p = Path(path)
        for name, var in template.data_vars.items():
            if var.dims[:2] != ("time", "prediction_timedelta"):
                raise DataError(
                    f"forecast variable {name!r} has dims {var.dims}; expected (time, prediction_timedelta, ...)."
                )
        if p.exists() and not overwrite and not _replaceable(p):
            raise ConfigError(
                f"the output {str(p)!r} already exists; pass --resume (resume=True) to complete it, "
                "--overwrite (overwrite=True) to replace it, or choose another --out."
            )
        rounder = StreamRounder(information)  # checks information
        n_init, n_lead = template.sizes["time"], template.sizes["prediction_timedelta"]
        tpl = template.copy()
        tpl.attrs["atmos_compression"] = rounder.attr()
        tpl.attrs.update(
            atmos_completed_leads=[0] * n_init,
            atmos_completed_steps=0,
            atmos_total_steps=int(n_init * n_lead),
            atmos_status="running",
        )
        enc: dict[str, dict[str, Any]] = {}
        for name, var in tpl.data_vars.items():
            enc[str(name)] = {"chunks": (1, 1, *var.shape[2:]), "_FillValue": np.float32(np.nan),
                              "compressors": (lossless_codec(),), "chunk_key_encoding": dict(CHUNK_KEYS)}
        for k, v in (encoding or {}).items():  # merged: the chunking above always holds
            enc[str(k)] = {**enc.get(str(k), {}), **dict(v)}
        p.parent.mkdir(parents=True, exist_ok=True)
        lock = StoreLock(p).acquire()  # a second writer fails here, before anything is touched
        tmp = p.with_name(f".{p.name}.creating-{os.getpid()}")
        try:
            if p.exists():  # re-checked under the lock
                if not overwrite and not _replaceable(p):
                    raise ConfigError(
                        f"the output {str(p)!r} already exists; pass --resume (resume=True) to complete it, "
                        "--overwrite (overwrite=True) to replace it, or choose another --out."
                    )
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            if tmp.exists():
                shutil.rmtree(tmp)
            # built beside the target and renamed into place: a kill during creation leaves no half store
            with quiet_zarr():
                tpl.to_zarr(str(tmp), mode="w-", compute=False, consolidated=True, encoding=enc)
            os.rename(tmp, p)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            lock.release()
            raise
        return cls(p, n_lead, [0] * n_init, lock, progress_interval)

    @classmethod
    def open(
        cls, path: str | os.PathLike, progress_interval: float = PROGRESS_INTERVAL, repair: bool = True
    ) -> ForecastWriter:
        """Reopen a store to resume it (progress read from its attributes).

        With ``repair`` (the default) every chunk of the leads the store claims is checked: a
        chunk file that is missing or does not decode (a deleted file, a disk that filled up, a
        copy that stopped half way) sets that initial time's progress back to the lead before
        it, so that resuming rewrites it and everything after. :attr:`repaired` lists what was
        found as ``(init index, lead index, reason)``.
        """
        lock = StoreLock(path).acquire()
        try:
            attrs = read_progress(path)
            done = [int(c) for c in attrs["atmos_completed_leads"]]
            n_init = len(done)
            total = int(attrs["atmos_total_steps"])
            if n_init == 0 or total % n_init:
                raise SourceError(
                    f"{str(path)!r} has inconsistent progress attributes {attrs}; rerun with --overwrite."
                )
            w = cls(path, total // n_init, done, lock, progress_interval)
            if repair:
                w.repaired = w._first_holes()
                for i, k, _ in w.repaired:
                    w.completed[i] = min(w.completed[i], k)
            return w
        except BaseException:
            lock.release()
            raise

    def _first_holes(self) -> list[tuple[int, int, str]]:
        """Per initial time, the first written lead with a missing or undecodable chunk."""
        first: dict[int, tuple[int, str]] = {}
        with quiet_zarr():
            for name, arr in self._group.arrays():
                dims = _dims(arr)
                if dims[:2] != ["time", "prediction_timedelta"]:
                    continue
                if tuple(arr.chunks[:2]) != (1, 1):  # pragma: no cover - not written by this writer
                    continue
                for i, n_done in enumerate(self.completed):
                    stop = min(n_done, first.get(i, (n_done, ""))[0])
                    for k in range(stop):
                        reason = _chunk_fault(self.path, name, arr, (i, k))
                        if reason:
                            first[i] = (k, f"{name}: {reason}")
                            break
        return sorted((i, k, r) for i, (k, r) in first.items())

    # -- writing --------------------------------------------------------------------------------
    def _array(self, name: str) -> Any:
        if name not in self._arrays:
            try:
                arr = self._group[name]
                # every written lead gets its chunk file, even one that is all NaN (a decoder's
                # lead 0): a missing file then always means a hole (see open(repair=True))
                if hasattr(arr, "with_config"):
                    arr = arr.with_config({"write_empty_chunks": True})
                self._arrays[name] = arr
                self._direct[name] = ChunkFile.of(arr)
            except KeyError as err:
                raise DataError(f"the forecast store {str(self.path)!r} has no variable {name!r}.") from err
        return self._arrays[name]

    def write(self, init_index: int, lead_index: int, values: Mapping[str, np.ndarray]) -> None:
        """Write one lead of one initial time and record it as done.

        Leads must be written in order (lead ``k`` after ``0 .. k-1``); each value has
        the variable's shape without its first two dims.
        """
        if lead_index != self.completed[init_index]:
            raise DataError(
                f"lead {lead_index} of initial time #{init_index} written out of order "
                f"({self.completed[init_index]} leads are done)."
            )
        arrays = [(name, self._array(name), arr) for name, arr in values.items()]
        items = [
            (a, self._direct[name], self.rounder(name, np.asarray(v, dtype=a.dtype), spatial_axes(_dims(a)[2:])))
            for name, a, v in arrays
        ]
        if len(self.rounder.keepbits) != self._rounder_keys:  # new kept bits: recorded before they are used
            self._rounder_keys = len(self.rounder.keepbits)
            self._last_progress = float("-inf")
        write_lead(items, (init_index, lead_index))
        self.completed[init_index] = lead_index + 1
        now = time.monotonic()
        # the progress attributes trail the chunks by at most progress_interval seconds (they never
        # claim a lead that is not written); close() always records the final progress
        if now - self._last_progress >= self.progress_interval:
            self._set_progress("running")
            self._last_progress = now
        if self.lock is not None:
            self.lock.touch()

    def skip_to(self, init_index: int) -> int:
        """Leads already written for ``init_index``."""
        return self.completed[init_index]

    #: ``(init index, lead index, reason)`` of the holes :meth:`open` found (leads rewritten on resume).
    repaired: list[tuple[int, int, str]] = []

    def _set_progress(self, status: str) -> None:
        # one metadata write (zarr.json replaced atomically), not one per key; sizes at the end only
        stored = store_nbytes(self.path, list(self.rounder.acc)) if status != "running" else None
        self._group.update_attributes(
            {
                "atmos_completed_leads": list(self.completed),
                "atmos_completed_steps": int(sum(self.completed)),
                "atmos_status": status,
                "atmos_compression": self.rounder.attr(stored),
            }
        )

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Update root attributes (JSON-serialisable values)."""
        self._group.update_attributes(dict(attrs))

    def close(self, status: str | None = None) -> None:
        """Record the final status (``complete`` when every lead is written, unless given)."""
        if status is None:
            status = "complete" if all(c == self.n_lead for c in self.completed) else "interrupted"
        try:
            self._set_progress(status)
        finally:
            if self.lock is not None:
                self.lock.release()

    def discard(self) -> None:
        """Delete the store (still holding its lock, so no other writer sees it half gone), then
        release the lock. For a run that fails before writing anything: it leaves nothing behind."""
        try:
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            if self.lock is not None:
                self.lock.release()

    @property
    def done(self) -> bool:
        return all(c == self.n_lead for c in self.completed)


def _dims(arr: Any) -> list[str]:
    return list(getattr(arr.metadata, "dimension_names", None) or [])


def _chunk_fault(root: Path, name: str, arr: Any, lead: tuple[int, int]) -> str:
    """Why the chunk(s) of ``arr`` at ``(init, lead)`` are unusable, or ``""``."""
    grid = arr.cdata_shape[2:]
    for rest in np.ndindex(*grid):
        idx = (*lead, *rest)
        key = arr.metadata.encode_chunk_key(idx)
        f = root / name / key
        if not f.is_file():
            return f"chunk {key} is missing"
        try:
            arr.blocks[idx]
        except Exception as err:  # the codec's own error type (RuntimeError, ValueError, ...)
            return f"chunk {key} does not decode ({type(err).__name__}: {err})"
    return ""


def _replaceable(path: Path) -> bool:
    """A store that a plain rerun may replace: written by atmos rollout and marked ``failed``
    (its settings or data were wrong; keeping it would only block the corrected run)."""
    try:
        status = str(read_progress(path).get("atmos_status", ""))
    except SourceError:
        return False
    return status.startswith("failed")


class quiet_zarr:
    """Context manager: silences zarr's "Consolidated metadata is currently not part" warning."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
