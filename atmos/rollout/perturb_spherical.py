"""Spherical-harmonic correlated Gaussian initial noise (isotropic on the sphere), any model grid.

A field ``eps(x) = sum_{l <= lmax, m} sqrt(C_l) z_lm Y_lm(x)`` with ``z_lm`` independent standard
normals and ``Y_lm`` the real orthonormal spherical harmonics (from ``scipy.special.sph_harm_y``)
is an isotropic Gaussian random field: by the addition theorem its covariance between two points
is ``sum_l C_l (2l+1)/(4 pi) P_l(cos d)``, a function of the great-circle distance ``d`` only, on
any grid (lat-lon or HEALPix), and its variance is the same at every point. The angular power
spectrum is the heat kernel ``C_l ~ exp(-l(l+1) (L/R)^2 / 2)`` (correlation ~``exp(-d^2/(2 L^2))``
for ``L`` well above the grid spacing; ``R`` the Earth radius), or, with ``decay``, the power law
``C_l ~ (l+1)^-decay``; it is normalized so that the variance is exactly 1 over the degrees kept.
The degrees kept go up to what the grid resolves (:func:`default_lmax`) and, for the heat kernel,
no further than where its power has fallen by 1e-6 (:func:`spectral_lmax`), so a larger length
scale needs a smaller basis. The basis ``[points, (lmax+1)^2]`` is computed once per grid and
degree (as torch-harmonics precomputes its Legendre tables) and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from atmos.errors import ConfigError
from atmos.grids import Grid
from atmos.grids.sht import MAX_BASIS_SIZE
from atmos.grids.sht import real_sh_basis as sh_basis
from atmos.rollout.perturbation import EARTH_RADIUS_KM, check_scale
from atmos.rollout.tables import model_latlon

__all__ = ["MAX_BASIS_SIZE", "SphericalPerturbation", "angular_spectrum", "default_lmax", "real_sh_basis",
           "sh_correlation", "spectral_lmax"]



def default_lmax(grid: Grid) -> int:
    """The highest degree a grid resolves: ``nlat - 1`` on lat-lon, ``3 nside - 1`` on HEALPix."""
    if hasattr(grid, "nside"):
        return 3 * int(grid.nside) - 1
    return int(len(grid.lat)) - 1


def spectral_lmax(length_scale_km: float, rel_power: float = 1e-6) -> int:
    """The degree where the heat-kernel spectrum ``exp(-l(l+1) (L/R)^2 / 2)`` falls below ``rel_power``."""
    sig = float(length_scale_km) / EARTH_RADIUS_KM
    return max(1, int(np.ceil(np.sqrt(-2.0 * np.log(rel_power)) / sig)))


def angular_spectrum(lmax: int, length_scale_km: float | None, decay: float | None = None) -> np.ndarray:
    """``C_l`` for ``l = 0..lmax``, normalized so that ``sum_l (2l+1)/(4 pi) C_l = 1`` (unit variance)."""
    ell = np.arange(lmax + 1, dtype=np.float64)
    if decay is not None:
        c = (ell + 1.0) ** (-float(decay))
    else:
        sig = float(length_scale_km) / EARTH_RADIUS_KM
        c = np.exp(-ell * (ell + 1.0) * sig**2 / 2.0)
    return c / np.sum((2 * ell + 1) / (4 * np.pi) * c)


def sh_correlation(distance_rad: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """The field's correlation at great-circle distances (radians): ``sum_l (2l+1)/(4pi) C_l P_l(cos d)``."""
    from numpy.polynomial import legendre

    coef = (2 * np.arange(len(spectrum)) + 1) / (4 * np.pi) * spectrum
    return legendre.legval(np.cos(np.asarray(distance_rad, dtype=np.float64)), coef)


def real_sh_basis(lat: np.ndarray, lon: np.ndarray, lmax: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`atmos.grids.sht.real_sh_basis` with a size check that names this method's options."""
    n_pts = np.asarray(lat).size
    if n_pts * (lmax + 1) ** 2 > MAX_BASIS_SIZE:
        raise ConfigError(
            f"a spherical-harmonic basis of degree {lmax} on {n_pts} points is too large "
            f"({n_pts * (lmax + 1) ** 2:.3g} values > {MAX_BASIS_SIZE:.3g}); pass a larger length scale "
            "(--perturb-length-scale), a smaller lmax (--perturbation-option lmax=N), or use the gaussian method "
            "with --perturb-length-scale."
        )
    return sh_basis(lat, lon, lmax)


@dataclass(frozen=True)
class SphericalPerturbation:
    """Isotropic spherical-harmonic Gaussian noise added to the initial state (normalized space).

    As the Gaussian method, each perturbed member gets ``scale * eps`` added to every input
    channel of every history step (the same ``eps`` for all steps); ``eps`` has unit variance
    at every point and a correlation that depends only on great-circle distance (see the
    module docstring), drawn independently per member and channel. Member 0 is the control.

    Parameters
    ----------
    scale : float
        Standard deviation in units of each channel's std.
    length_scale_km : float
        Correlation length ``L`` of the heat-kernel spectrum (default 1000 km).
    decay : float, optional
        Use the power-law spectrum ``(l+1)^-decay`` instead.
    lmax : int, optional
        Highest degree (default: what the grid resolves, see :func:`default_lmax`).
    control : bool
        Keep member 0 unperturbed.
    """

    scale: float = 0.0
    length_scale_km: float = 1000.0
    decay: float | None = None
    lmax: int | None = None
    control: bool = True
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    method = "spherical"

    def __post_init__(self) -> None:
        check_scale("the spherical perturbation scale", self.scale)
        if not (np.isfinite(self.length_scale_km) and self.length_scale_km > 0):
            raise ConfigError(f"the spherical length scale must be > 0 km, got {self.length_scale_km!r}.")
        if self.decay is not None and not (np.isfinite(self.decay) and self.decay > 0):
            raise ConfigError(f"the spherical spectral decay must be a number > 0, got {self.decay!r}.")
        if self.lmax is not None and (isinstance(self.lmax, bool) or int(self.lmax) != self.lmax or self.lmax < 1):
            raise ConfigError(f"lmax must be an integer >= 1, got {self.lmax!r}.")

    def params(self) -> dict[str, Any]:
        """The parameters recorded in ``atmos_perturbation``."""
        return {"scale": self.scale, "length_scale_km": None if self.decay else self.length_scale_km,
                "decay": self.decay, "lmax": self.lmax, "control": self.control}

    def describe(self) -> str:
        """One line for the forecast's attributes."""
        spec = (
            f"spectrum (l+1)^-{self.decay:g}" if self.decay else f"heat-kernel spectrum, L = {self.length_scale_km:g} km"
        )
        ctl = "; member 0 is the unperturbed control" if self.control else ""
        return f"spherical-harmonic Gaussian, std {self.scale:g} x channel std (normalized space), {spec}{ctl}"

    def degree(self, grid: Grid) -> int:
        """The highest degree kept on ``grid``: ``lmax``, else what the grid and the spectrum resolve."""
        if self.lmax is not None:
            return int(self.lmax)
        cap = default_lmax(grid)
        return cap if self.decay is not None else min(cap, spectral_lmax(self.length_scale_km))

    def basis(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """``(Y [points, ncoef], sqrt(C_l) per column)`` on ``grid`` (tensor layout), cached."""
        lmax = self.degree(grid)
        key = (repr(grid), lmax)
        if key not in self._cache:
            lat, lon = model_latlon(grid)
            y, deg = real_sh_basis(np.asarray(lat), np.asarray(lon), lmax)
            amp = np.sqrt(angular_spectrum(lmax, self.length_scale_km, self.decay))[deg]
            self._cache[key] = (y, amp)
        return self._cache[key]

    def noise(self, grid: Grid, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """Unit-variance noise ``[B, C, *grid]`` float64 for ``shape = (B, C, *grid)`` (member 0 zero with
        ``control``); the same ``seed`` gives the same noise."""
        b, c = shape[:2]
        y, amp = self.basis(grid)
        rng = np.random.default_rng(int(seed))
        z = rng.standard_normal((b * c, len(amp))) * amp
        eps = (z @ y.T).reshape(b, c, *shape[2:])
        if self.control:
            eps[0] = 0.0
        return torch.from_numpy(eps)

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None:
        """Builds the basis once (a too-large basis is refused before anything is written)."""
        if self.scale > 0:
            self.basis(forecaster.model_grid)

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any:
        """The members' initial state: the control plus ``scale * eps``."""
        state = forecaster.encode(data, init, members=members, forcings=forcings, context=context)
        if self.scale > 0:
            h = state.history
            eps = self.noise(forecaster.model_grid, (h.shape[0], h.shape[2], *h.shape[3:]), seed)
            state.history = h + (self.scale * eps).to(torch.float32).unsqueeze(1).to(h.device)
        return state

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any:
        """One model step of all members (the noise is initial only)."""
        return forecaster.advance(state)
