"""Known-answer check of the embedded default: the shipped model, rolled out from the shipped
initial conditions, must reproduce the scorecard committed with it (``atmos/sample/scorecard.json``).

A silent change anywhere on the inference path (normalization statistics, channel order,
forcings, the residual step, the model code) changes the forecast; this check turns that
into a failure instead of a wrong answer (Prithvi WxC added such a script after users found
its outputs wrong).

The scorecard holds, for the 10-day forecast from :data:`~atmos.rollout.sample.SAMPLE_DEFAULT_INIT`
and every output channel at the leads :data:`LEADS_H`: the area-weighted global mean, the
area-weighted spatial standard deviation and the RMSE against the shipped data at the valid time
(the initial-condition file covers 2019-12-22 .. 2020-01-14, so it is also the truth).

Tolerance (:data:`RTOL`): a value ``v`` matches the committed ``r`` when
``|v - r| <= RTOL * s``, with ``s`` the committed spatial std of the channel at that lead (for
means and stds) or ``r`` itself (for RMSEs). Float32 inference differs between thread counts,
BLAS builds and CPUs by reassociation; over 40 chaotic steps that grew to at most ~1e-5
relative in our runs (1 vs 2 threads), while the smallest change the check must catch, a 1 %
change of one channel's normalization std, moves the forecast by ~1e-2 of the spatial std.
``RTOL = 1e-3`` sits between the two, two orders of magnitude from each.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from atmos.errors import ConfigError, SourceError

__all__ = ["LEADS_H", "RTOL", "SCORECARD_FILE", "ValidationReport", "compute_scorecard", "validate_sample", "write_scorecard"]

#: Leads (hours) recorded in the scorecard.
LEADS_H: tuple[int, ...] = (6, 24, 72, 120, 240)
#: Relative tolerance of the known-answer comparison (see the module docstring).
RTOL = 1.0e-3
#: File name of the committed scorecard, next to the sample checkpoint.
SCORECARD_FILE = "scorecard.json"


@dataclasses.dataclass
class ValidationReport:
    """Outcome of :func:`validate_sample`.

    ``worst`` is the largest ``|v - r| / scale`` over all entries (``<= rtol`` when ``ok``);
    ``failures`` lists ``(channel, lead_h, statistic, value, committed)`` beyond the tolerance.
    """

    ok: bool
    worst: float
    rtol: float
    n_values: int
    failures: list[tuple[str, int, str, float, float]]

    def format(self) -> str:
        head = (
            f"known-answer check {'passed' if self.ok else 'FAILED'}: {self.n_values} values, worst relative "
            f"difference {self.worst:.3g} (tolerance {self.rtol:g})"
        )
        rows = [f"  {c} {h}h {s}: {v:.7g} (committed {r:.7g})" for c, h, s, v, r in self.failures[:20]]
        return "\n".join([head, *rows])


def _channels(fc) -> list[tuple[str, str, Any]]:
    out = []
    for name, da in fc.data_vars.items():
        if "level" in da.dims:
            out += [(f"{name}_{int(lv)}", str(name), lv) for lv in da["level"].values]
        else:
            out.append((str(name), str(name), None))
    return out


def compute_scorecard(model: Any = None, data: Any = None, init: str | None = None) -> dict[str, Any]:
    """Roll out ``model`` (default: the embedded sample) from ``data`` (default: its shipped
    initial conditions) for 10 days and return the scorecard as JSON-ready data."""
    from atmos.io.coords import area_weights
    from atmos.io.open import open_dataset
    from atmos.rollout.api import rollout
    from atmos.rollout.sample import SAMPLE_DEFAULT_INIT, sample_data_path

    init = init or SAMPLE_DEFAULT_INIT
    truth = open_dataset(str(sample_data_path())) if data is None else open_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    fc = rollout(model, truth, init, max(LEADS_H) / 24).load()
    w = area_weights(fc).values.astype(np.float64)
    w = w / w.sum()
    leads = fc["prediction_timedelta"].values
    out: dict[str, Any] = {"init": str(init), "leads_h": list(LEADS_H), "channels": {}}
    for label, name, lev in _channels(fc):
        da = fc[name] if lev is None else fc[name].sel(level=lev)
        tr = truth[name] if lev is None else truth[name].sel(level=lev)
        rec: dict[str, list[float]] = {"mean": [], "std": [], "rmse": []}
        for h in LEADS_H:
            i = int(np.flatnonzero(leads == np.timedelta64(h, "h"))[0])
            x = da.isel(time=0, prediction_timedelta=i).values.astype(np.float64)
            t = tr.sel(time=fc["time"].values[0] + leads[i]).values.astype(np.float64)
            m = float((x * w).sum())
            rec["mean"].append(m)
            rec["std"].append(float(np.sqrt(((x - m) ** 2 * w).sum())))
            rec["rmse"].append(float(np.sqrt(((x - t) ** 2 * w).sum())))
        out["channels"][label] = rec
    return out


def _scorecard_path(model: Any) -> Path:
    from atmos.rollout.sample import sample_checkpoint_dir

    folder = sample_checkpoint_dir() if model is None else Path(model)
    return folder / SCORECARD_FILE


def validate_sample(model: Any = None, data: Any = None, rtol: float = RTOL) -> ValidationReport:
    """Compare a fresh scorecard of ``model`` (default: the embedded sample) with the one
    committed beside its checkpoint (``scorecard.json``)."""
    if not isinstance(rtol, (int, float)) or not 0 < rtol < 1:
        raise ConfigError(f"rtol must be a number between 0 and 1 (default {RTOL:g}), got {rtol!r}.")
    path = _scorecard_path(model)
    if not path.is_file():
        raise SourceError(
            f"no committed scorecard at {str(path)!r}; write one with `atmos validate --write` "
            "(scripts/train_sample_model.py does this for the embedded model)."
        )
    ref = json.loads(path.read_text())
    new = compute_scorecard(model, data, ref.get("init"))
    failures: list[tuple[str, int, str, float, float]] = []
    worst, n = 0.0, 0
    missing = sorted(set(ref["channels"]) ^ set(new["channels"]))
    if missing:
        raise SourceError(f"the model's output channels differ from the committed scorecard's: {missing}.")
    for ch, rec in ref["channels"].items():
        for stat in ("mean", "std", "rmse"):
            for j, h in enumerate(ref["leads_h"]):
                r, v = rec[stat][j], new["channels"][ch][stat][j]
                scale = abs(r) if stat == "rmse" else rec["std"][j]
                rel = abs(v - r) / max(scale, 1e-30) if np.isfinite(v) else float("inf")
                worst, n = max(worst, rel), n + 1
                if rel > rtol:
                    failures.append((ch, int(h), stat, float(v), float(r)))
    return ValidationReport(ok=not failures, worst=worst, rtol=rtol, n_values=n, failures=failures)


def write_scorecard(model: Any = None, data: Any = None) -> Path:
    """(Re)compute the scorecard and write it atomically beside the checkpoint (after training a new default)."""
    path = _scorecard_path(model)
    card = compute_scorecard(model, data)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=1))
    os.replace(tmp, path)
    return path
