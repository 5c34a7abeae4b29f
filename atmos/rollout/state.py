"""The state of a rollout (:class:`RolloutState`) and its copy in a store for ``--resume``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atmos.rollout.context import DataContext

__all__ = ["STATE_FILE", "RolloutState", "load_state", "save_state"]

#: The model state of an interrupted rollout, inside the store (zarr ignores the file).
STATE_FILE = "atmos_resume_state.pt"


@dataclass
class RolloutState:
    """The state of a rollout on the model grid (normalized).

    Attributes
    ----------
    history : Tensor ``[B, history, C_in, *model_grid]``
        Input window, oldest first; ``history[:, -1]`` is the state at ``time``.
    time : numpy.datetime64
        Valid time of ``history[:, -1]``.
    init : numpy.datetime64
        Initial time.
    step : int
        Model steps made since ``init``.
    carry : Any
        Recurrent model state (None for the ViT; the GRU hidden states of the U-Net-GRU).
    diagnostics : Tensor ``[B, V, *model_grid]`` or None
        Variables diagnosed by the attached decoders from the latent of the step that
        produced this state (physical units, model grid, order of
        ``Forecaster.channels["diagnostics"]``); None at the initial state and without
        decoders.
    seed : int
        The seed of the rollout's noise (perturbations, a stochastic model's noise inputs).
    """

    history: torch.Tensor
    time: np.datetime64
    init: np.datetime64
    step: int = 0
    carry: Any = None
    context: DataContext | None = field(default=None, repr=False)
    diagnostics: torch.Tensor | None = field(default=None, repr=False)
    seed: int = 0


def save_state(store: str | os.PathLike, completed: Sequence[int], i: int, k: int, state: RolloutState) -> None:
    """Save the state at lead ``k`` of init ``i`` in ``store``, so that ``--resume`` continues from it.

    ``completed`` holds, per store of the run, the leads of init ``i`` it has; the state is saved only
    when every store holds exactly ``k + 1`` (else resume recomputes). A state that cannot be saved
    only costs recomputation.
    """
    if any(c != k + 1 for c in completed):
        return  # the stores disagree (e.g. the native one is behind): resume recomputes
    payload = {
        "init_index": int(i),
        "lead": int(k),
        "step": int(state.step),
        "time": str(np.datetime64(state.time, "ns")),
        "history": state.history.detach().cpu(),
        "carry": state.carry,
        "diagnostics": state.diagnostics,
        "seed": int(state.seed),
    }
    path = Path(store) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except Exception:  # a state that cannot be saved only costs recomputation on resume
        tmp.unlink(missing_ok=True)


def load_state(
    store: str | os.PathLike, i: int, k: int, device: torch.device, ctx: DataContext, t0: Any
) -> RolloutState | None:
    """The state saved in ``store`` at lead ``k`` of init ``i`` (initial time ``t0``), or None
    (no file, another lead, unreadable)."""
    path = Path(store) / STATE_FILE
    if not path.is_file():
        return None
    try:
        p = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # unreadable: recompute from the initial time
        return None
    if p.get("init_index") != i or p.get("lead") != k:
        return None
    return RolloutState(
        history=p["history"],
        time=np.datetime64(p["time"], "ns"),
        init=np.datetime64(pd.Timestamp(t0).to_datetime64(), "ns"),
        step=int(p["step"]),
        carry=p["carry"],
        context=ctx,
        diagnostics=p["diagnostics"],
        seed=int(p.get("seed", 0)),
    )
