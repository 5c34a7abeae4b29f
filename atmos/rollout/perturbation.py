"""Initial-state perturbations of ensembles: :class:`Perturbation` (Gaussian) and its (smoothed) noise.

The Gaussian method is the home of what every perturbation method shares: the interface
(:class:`PerturbationMethod`, a Protocol: ``apply(forecaster, data, init, members=..., seed=...)``
-> the initial :class:`~atmos.rollout.state.RolloutState` of the members, and ``advance`` -> one
model step, where a method may act on the input window at every step), the check of a scale, and
the area-weighted RMS of a perturbation (:func:`weighted_rms`). The other methods live in
``perturb_*.py``; :mod:`atmos.rollout.perturbations` selects one by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from atmos.errors import ConfigError
from atmos.grids import Grid
from atmos.rollout.tables import model_latlon

__all__ = [
    "EARTH_RADIUS_KM", "Perturbation", "PerturbationMethod", "PerturbationNoise", "area_weights_like",
    "check_scale", "hours", "smoother", "weighted_rms",
]

EARTH_RADIUS_KM = 6371.0


@runtime_checkable
class PerturbationMethod(Protocol):
    """The one interface of every ensemble perturbation method.

    ``method`` is its name (``gaussian``, ``spherical``, ``bred``, ``lagged``,
    ``temporal-dropout``); ``params()`` the parameters recorded in the forecast's
    ``atmos_perturbation`` attribute; ``check`` refuses, before anything is written, an
    initial time whose data the method cannot have (e.g. the history bred vectors cycle
    through) or a model it cannot perturb; ``apply`` gives the members' initial state
    ``history [members, H, C_in, *model_grid]`` (member 0 is the unperturbed control wherever
    the method has one); ``advance`` makes one model step of all members (``forecaster.advance``
    for every method but those acting on the input window at each step). The same ``seed``
    gives the same members.
    """

    method: str

    def params(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None: ...

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any: ...

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any: ...


def check_scale(what: str, value: float, upper: float | None = None) -> float:
    """``value`` as a float >= 0 (and < ``upper``), else a ConfigError naming ``what``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be a number >= 0, got {value!r}.") from err
    if not np.isfinite(v) or v < 0 or (upper is not None and v >= upper):
        bound = f" and < {upper:g}" if upper is not None else ""
        raise ConfigError(f"{what} must be a number >= 0{bound}, got {value!r}.")
    return v


def hours(td: Any) -> str:
    """A duration as ``"12h"`` (for descriptions)."""
    import pandas as pd

    return f"{pd.Timedelta(td) / pd.Timedelta('1h'):g}h"


def area_weights_like(grid: Grid) -> torch.Tensor:
    """The model grid's normalized cell areas in its tensor layout, scaled to mean 1 (float64)."""
    w = np.asarray(grid.area_weights(), dtype=np.float64)
    if hasattr(grid, "cells_to_faces"):
        w = np.asarray(grid.cells_to_faces(w))
    return torch.from_numpy(w / w.mean())


def weighted_rms(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Area-weighted RMS over channels and grid points of ``x [B, C, *grid]``: ``[B]`` float64."""
    w = weights.to(device=x.device, dtype=torch.float64)
    sq = x.double() ** 2 * w
    return torch.sqrt(sq.flatten(1).mean(dim=1))


@dataclass(frozen=True)
class Perturbation:
    """Gaussian perturbation of the initial state in normalized space (ensembles).

    Each perturbed member gets ``scale * eps`` added to every prognostic channel of
    every history step (the same ``eps`` for all history steps, so tendencies are not
    disturbed), where ``eps`` is white noise with unit variance per grid point, or,
    with ``length_scale_km``, white noise smoothed with the kernel ``exp(-d^2/L^2)``
    (``d`` great-circle distance, truncated at ``3 L``) and rescaled to unit variance,
    i.e. spatially correlated with a correlation of about ``exp(-d^2 / (2 L^2))``.

    Parameters
    ----------
    scale : float
        Standard deviation in units of each channel's std.
    length_scale_km : float or None
        Correlation length; None = uncorrelated.
    control : bool
        Keep member 0 unperturbed (a control forecast).
    """

    scale: float = 0.0
    length_scale_km: float | None = None
    control: bool = True
    method = "gaussian"

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale < 0:
            raise ConfigError(f"perturbation scale must be a number >= 0, got {self.scale!r}.")
        if self.length_scale_km is not None and not (
            np.isfinite(self.length_scale_km) and self.length_scale_km > 0
        ):
            raise ConfigError(f"perturbation length scale must be > 0 km, got {self.length_scale_km!r}.")

    def describe(self) -> str:
        """One line for the forecast's ``atmos_perturbation`` attribute."""
        if self.scale == 0:
            return "none"
        corr = (
            f", spatially correlated (L = {self.length_scale_km:g} km)"
            if self.length_scale_km
            else ", uncorrelated"
        )
        ctl = "; member 0 is the unperturbed control" if self.control else ""
        return f"Gaussian, std {self.scale:g} x channel std (normalized space){corr}{ctl}"

    def params(self) -> dict[str, Any]:
        """The parameters recorded in ``atmos_perturbation``."""
        return {"scale": self.scale, "length_scale_km": self.length_scale_km, "control": self.control}

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None:
        """Nothing beyond the model's own history is needed."""

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any:
        """``forecaster.encode`` with this perturbation: the noise of :class:`PerturbationNoise`."""
        return forecaster.encode(
            data, init, members=members, perturbation=self, seed=seed, forcings=forcings, context=context
        )

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any:
        """One model step of all members: ``forecaster.advance(state)`` (the noise is initial only)."""
        return forecaster.advance(state)


def smoother(lat: np.ndarray, lon: np.ndarray, length_km: float) -> Any:
    """Sparse ``[n, n]`` matrix with rows ``exp(-d^2/L^2)`` (d < 3L), normalized to unit L2 norm.

    ``lat``/``lon`` (degrees, any shape) are flattened to the ``n`` points.
    """
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    la, lo = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    ell = length_km / EARTH_RADIUS_KM
    radius = min(2.0, 2.0 * np.sin(min(np.pi, 3.0 * ell) / 2.0))
    tree = cKDTree(xyz)
    d = tree.sparse_distance_matrix(tree, radius, output_type="coo_matrix")
    rows = np.r_[d.row, np.arange(len(xyz))]
    cols = np.r_[d.col, np.arange(len(xyz))]
    chord = np.r_[d.data, np.zeros(len(xyz))]
    arc = 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    w = sp.coo_matrix((np.exp(-((arc / ell) ** 2)), (rows, cols)), shape=(len(xyz),) * 2).tocsr()
    w.sum_duplicates()
    w.data[w.data > 1.0] = 1.0  # the diagonal added twice when d.data held it too
    norm = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
    return sp.diags(1.0 / norm) @ w


class PerturbationNoise:
    """Perturbation noise on one model grid (the smoothing matrices cached per length scale).

    Parameters
    ----------
    grid : Grid
        The model grid (tensor layout of :func:`atmos.rollout.tables.model_latlon`).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._smoothers: dict[float, Any] = {}

    def __call__(self, shape: torch.Size, pert: Perturbation, seed: int) -> torch.Tensor:
        """Noise for a history window of shape ``[B, H, C, *grid]``.

        Returns
        -------
        Tensor ``[B, 1, C, *grid]`` float32 (CPU)
            ``pert.scale * eps`` (the same for every history step); member 0 is zero with
            ``pert.control``. The same ``seed`` gives the same noise.
        """
        b, _, c = shape[:3]
        grid = tuple(shape[3:])
        npts = int(np.prod(grid))
        rng = np.random.default_rng(int(seed))
        eps = rng.standard_normal((b, c, npts))
        if pert.length_scale_km:
            key = float(pert.length_scale_km)
            if key not in self._smoothers:
                self._smoothers[key] = smoother(*model_latlon(self.grid), key)
            w = self._smoothers[key]
            eps = (w @ eps.reshape(b * c, npts).T).T.reshape(b, c, npts)
        if pert.control:
            eps[0] = 0.0
        return torch.from_numpy((pert.scale * eps).astype(np.float32)).view(b, 1, c, *grid)
