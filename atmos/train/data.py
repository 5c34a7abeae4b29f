"""Training data of a config: open, select, check, regrid, window; statistics as JSON.

:func:`prepare_data` gives the forecast trainer its windows (:class:`DataBundle`);
:func:`open_selected` is shared with the decoder trainer; :func:`stats_to_json` /
:func:`stats_from_json` store the normalization statistics in checkpoints.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from atmos.errors import DataError
from atmos.train.config import TrainConfig
from atmos.train.core import area_weights

__all__ = ["DataBundle", "open_selected", "prepare_data", "stats_from_json", "stats_to_json"]

log = logging.getLogger("atmos.train")


@dataclass
class DataBundle:
    """Training/validation windows and what the model and checkpoint need to know about them."""

    train: Any  # WindowDataset
    val: Any | None  # WindowDataset or None
    val_indices: list[int]
    stats: Any  # xarray.Dataset
    grid: Any  # LatLonGrid | HealpixGrid
    grid_shape: tuple[int, ...]
    layout: str
    time_step: Any  # pandas.Timedelta
    schema: Any  # atmos.io.windows.WindowSchema of the training windows
    area: torch.Tensor = field(repr=False)


def open_selected(source: str, cfg: TrainConfig, period: Sequence[str] | None, what: str):
    """Open ``source`` with only the variables the config needs, on the training grid."""
    from atmos.io.forcings import DERIVED_FORCINGS
    from atmos.io.open import open_dataset

    d = cfg.data
    wanted = list(dict.fromkeys([*d.variables, *[f for f in d.forcings if f not in DERIVED_FORCINGS], *d.statics]))
    ds = open_dataset(source, units=d.units)
    missing = [v for v in wanted if v not in ds.data_vars]
    if missing:
        raise DataError(
            f"{what} source {source!r} lacks variables {missing} named in the config; it has "
            f"{sorted(map(str, ds.data_vars))}. Fix data.variables/forcings/statics or the source."
        )
    ds = ds[wanted]
    if period is not None:
        ds = ds.sel(time=slice(str(period[0]), str(period[1])))
        if ds.sizes.get("time", 0) == 0:
            raise DataError(f"{what} period {list(period)} selects no time step of {source!r}.")
    if d.levels is not None and "level" in ds.dims:
        have = [int(v) for v in ds["level"].values]
        miss = [lv for lv in d.levels if lv not in have]
        if miss:
            raise DataError(f"data.levels {miss} are not in {what} source {source!r}; it has levels {have}.")
        ds = ds.sel(level=list(d.levels))
    from atmos.io.names import check_plausible_dataset

    check_plausible_dataset(
        ds,
        f" in the {what} source {source!r}",
        fix="Fix the variable's units attribute so that atmos converts it, or declare its units in the "
        "config: data.units: {VARIABLE: UNITS} (e.g. on the command line data.units.geopotential=m).",
    )
    if d.in_memory:
        ds = ds.load()
    if d.grid == "healpix":
        from atmos.io.coords import grid_of
        from atmos.io.regrid import to_healpix

        if "cell" not in ds.dims:
            ds = to_healpix(ds, int(d.nside), method=d.regrid_method)
            if d.in_memory:
                ds = ds.load()
        elif grid_of(ds).nside != d.nside:
            raise DataError(f"{what} data is on HEALPix nside {grid_of(ds).nside}, the config asks for {d.nside}.")
    return ds


def stats_to_json(stats) -> dict[str, Any]:
    """Normalization statistics (``xarray.Dataset``) as a JSON-safe dict (NaN/inf -> None)."""
    d = stats.to_dict(data="list")

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, np.generic):
            return clean(x.item())
        return x

    return clean(d)


def stats_from_json(d: Mapping[str, Any]):
    """Inverse of :func:`stats_to_json` (None -> NaN); an ``xarray.Dataset``."""
    import xarray as xr

    def nan(x: Any) -> Any:
        if x is None:
            return float("nan")
        if isinstance(x, list):
            return [nan(v) for v in x]
        return x

    d = dict(d)
    d["data_vars"] = {k: {**v, "data": nan(v["data"])} for k, v in d["data_vars"].items()}
    ds = xr.Dataset.from_dict(d)
    ds["statistic"] = ds["statistic"].astype(str)
    return ds


def prepare_data(cfg: TrainConfig, stats=None) -> DataBundle:
    """Open, select, regrid and window the training and validation data of a config.

    Parameters
    ----------
    cfg : TrainConfig
    stats : xarray.Dataset, optional
        Normalization statistics to use (e.g. from a checkpoint). Default: loaded from
        ``data.stats`` or computed from the training period.
    """
    from atmos.io.coords import grid_of
    from atmos.io.windows import WindowDataset

    d = cfg.data
    train_ds = open_selected(d.source, cfg, d.period, "training")
    if stats is None:
        if d.stats:
            from atmos.io.stats import load_stats

            stats = load_stats(d.stats)
        else:
            from atmos.io.stats import compute_stats

            names = [v for v in train_ds.data_vars]
            log.info("computing normalization statistics of %d variables over the training period", len(names))
            stats = compute_stats(train_ds, variables=names).compute()
    common = {
        "inputs": list(d.variables),
        "forcings": list(d.forcings),
        "statics": list(d.statics),
        "history": d.history,
        "levels": d.levels,
        "stats": stats,
        "cache": "memory" if d.in_memory else "blocks",
        "healpix_layout": "faces",
    }
    train = WindowDataset(train_ds, lead_steps=cfg.multistep.max_steps, **common)
    val = None
    val_idx: list[int] = []
    v = cfg.validation
    if v.source:
        val_ds = open_selected(v.source, cfg, v.period, "validation")
        val = WindowDataset(val_ds, lead_steps=v.steps, **common)
        n = len(val)
        if v.samples is None or v.samples >= n:
            val_idx = list(range(n))
        else:
            val_idx = sorted({round(float(i)) for i in np.linspace(0, n - 1, v.samples)})
    grid = grid_of(train_ds)
    layout = "latlon" if tuple(train.grid_shape) == tuple(grid.shape) else "faces"  # HEALPix faces
    area = area_weights(grid, tuple(train.grid_shape), uniform=not cfg.loss.area_weighted)
    return DataBundle(train, val, val_idx, stats, grid, tuple(train.grid_shape), layout, train.step, train.schema(), area)
