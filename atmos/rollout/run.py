"""Running a :class:`~atmos.rollout.plan.RolloutPlan`: open the stores, loop over initial times and
leads (encode / advance / decode, lead by lead), save the state when interrupted, close."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.rollout.background import BackgroundWriter
from atmos.rollout.layout import dataset_from_layout, split_output
from atmos.rollout.plan import RolloutPlan
from atmos.rollout.state import STATE_FILE, RolloutState, load_state, save_state
from atmos.rollout.stores import Stores, close_stores, open_stores
from atmos.rollout.writer import quiet_zarr

__all__ = ["run_plan", "sigterm_as_interrupt"]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what SLURM sends at a time limit, on preemption and on scancel) ends the rollout
    like Ctrl-C: the stores record ``interrupted`` and their progress, and ``--resume`` continues."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass
class _Run:
    """What the loop shares: the plan, the stores, the in-memory result and the last state reached."""

    plan: RolloutPlan
    stores: Stores
    mem: dict[str, np.ndarray] | None
    bar: Any = None
    callback: Callable[[int, int], None] | None = None
    last: tuple[int, int, RolloutState] | None = None  # (init index, lead, state at that lead)
    main: Any = None  # the stores' writers, or BackgroundWriters feeding them (threaded writes)
    native: Any = None

    @property
    def writers(self) -> list[Any]:
        return [w for w in (self.main, self.native) if w is not None]

    def flush(self, raise_error: bool = True) -> None:
        """Wait until every lead handed to a writer thread is written (and raise its error)."""
        for w in self.writers:
            if isinstance(w, BackgroundWriter):
                w.flush(raise_error=raise_error)

    def stop(self) -> None:
        for w in self.writers:
            if isinstance(w, BackgroundWriter):
                w.stop()


def _emit(run: _Run, i: int, k: int, state: RolloutState) -> None:
    """Decode the state at lead ``k`` of init ``i`` and write it (or keep it in memory)."""
    plan, main_w, native_w = run.plan, run.main, run.native
    fc, ens = plan.forecaster, plan.members is not None
    if native_w is not None:
        assert plan.native_layout is not None
        arr, nat = fc.decode(state, native=True)
        if native_w.completed[i] == k:
            native_w.write(i, k, split_output(plan.native_layout, nat, ens))
    else:
        arr = fc.decode(state)
    values = split_output(plan.layout, arr, ens)
    if main_w is not None:
        if main_w.completed[i] == k:
            main_w.write(i, k, values)
    else:
        assert run.mem is not None
        for name, v in values.items():
            run.mem[name][i, k] = v


def _run_init(run: _Run, i: int, t0: pd.Timestamp) -> None:
    """All leads of initial time ``i`` that a store lacks (from a saved state when there is one)."""
    plan, writers = run.plan, run.writers
    fc = plan.forecaster
    start = min(w.completed[i] for w in writers) if writers else 0
    if run.mem is None and start >= plan.n_lead:
        return
    if run.mem is not None:
        start = 0
    state = None
    if start > 0 and run.stores.main is not None:
        state = load_state(run.stores.main.path, i, start - 1, fc.device, plan.context, t0)
    k_state = start - 1 if state is not None else 0
    pert, seed = plan.perturbation, plan.seed + i
    if state is None:
        state = pert.apply(
            fc, plan.data, t0, members=plan.batch, seed=seed, forcings=plan.forcings, context=plan.context
        )
        if state.seed != seed:  # a stochastic model's noise follows the run's seed whatever the perturbation
            state = dataclasses.replace(state, seed=seed)
    for k in range(k_state, plan.n_lead):
        if k > k_state:
            for _ in range(plan.every):
                state = pert.advance(fc, state, seed)
        if k < start:
            run.last = (i, k, state)
            continue
        _emit(run, i, k, state)
        run.last = (i, k, state)
        if run.bar is not None:
            run.bar.update(1)
        if run.callback is not None:
            run.flush()  # "called after each lead is written"
            run.callback(i, k)


def _progress_bar(plan: RolloutPlan, stores: Stores) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=len(plan.inits) * plan.n_lead,
        initial=sum(stores.main.completed) if stores.main is not None else 0,
        unit="lead",
        desc=f"rollout {plan.forecaster.name}",
        dynamic_ncols=True,
    )


def run_plan(
    plan: RolloutPlan,
    *,
    out: str | os.PathLike | None = None,
    native_out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    information: float | None = None,
    threaded_writes: bool = True,
) -> xr.Dataset:
    """Run a plan: stream it into ``out`` (and ``native_out``) lead by lead, or keep it in memory.

    The parameters are those of :func:`atmos.rollout.api.rollout`. Ctrl-C and SIGTERM save the
    state at the last lead every store holds (``--resume`` continues from it) and mark the stores
    ``interrupted``; an error marks them ``failed`` (stores it created and left empty are removed).
    With ``threaded_writes`` (the default) each store is written on a thread of its own
    (:class:`~atmos.rollout.background.BackgroundWriter`, the same bytes), overlapping the model.

    Returns
    -------
    xarray.Dataset
        Opened lazily from ``out`` when given, else in memory.
    """
    stores = open_stores(plan, out, native_out, resume=resume, overwrite=overwrite, information=information)
    mem = None
    if stores.main is None:
        mem = {n: np.full(v["shape"], np.nan, np.float32) for n, v in plan.layout.variables.items()}
    run = _Run(plan, stores, mem, _progress_bar(plan, stores) if progress else None, callback)
    run.main, run.native = (BackgroundWriter(w) if w is not None and threaded_writes else w
                            for w in (stores.main, stores.native))
    status, failed = None, False
    stack = contextlib.ExitStack()
    stack.enter_context(sigterm_as_interrupt())
    try:
        for i, t0 in enumerate(plan.inits):
            _run_init(run, i, t0)
        run.flush()  # an error of a writer thread surfaces here at the latest
    except KeyboardInterrupt:
        status = "interrupted"
        run.flush(raise_error=False)  # the leads handed over are written before the state is saved
        if stores.main is not None and run.last is not None:
            i, k, state = run.last
            save_state(stores.main.path, [w.completed[i] for w in stores.writers], i, k, state)
        raise
    except BaseException as err:
        status, failed = f"failed: {err}", True
        raise
    finally:
        run.stop()
        stack.close()
        if run.bar is not None:
            run.bar.close()
        close_stores(stores, status, failed)
    if out is not None:
        (Path(out) / STATE_FILE).unlink(missing_ok=True)
        with quiet_zarr():
            return xr.open_zarr(str(out), consolidated=True)
    assert mem is not None
    return dataset_from_layout(plan.layout, mem, {**plan.attrs, "atmos_status": "complete"})
