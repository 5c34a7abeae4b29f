"""Real spherical harmonics on any grid of points, and a quadrature transform as an ``nn.Module``.

The real orthonormal harmonics ``Y_lm`` (columns ``(l, 0)``, then ``sqrt(2) Re Y_l^m`` and
``sqrt(2) Im Y_l^m`` for ``m = 1..l``; from :func:`scipy.special.sph_harm_y`) are evaluated once
at the grid's cell centres. :class:`SphericalHarmonicTransform` then projects fields by
quadrature with the grid's normalized cell areas ``w`` (summing to 1)::

    a_lm = 4 pi sum_x w_x f(x) Y_lm(x)

which is exact for band-limited fields only on grids with an exact quadrature; on the
equiangular lat-lon and HEALPix grids of atmos it is an approximation whose aliasing grows
toward the grid's highest degree. It is meant for losses and diagnostics (power per degree
``P_l = sum_m a_lm^2 / (4 pi)``, which sums to about the area-weighted mean of ``f^2`` by
Parseval), not for exact inversion. The basis ``[points, (lmax+1)^2]`` is a buffer built in
``__init__`` (as torch-harmonics precomputes its Legendre tables).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from atmos.errors import GridError

__all__ = ["MAX_BASIS_SIZE", "SphericalHarmonicTransform", "real_sh_basis"]

#: The largest basis (points x coefficients) built.
MAX_BASIS_SIZE = 60_000_000


def real_sh_basis(lat: np.ndarray, lon: np.ndarray, lmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Real orthonormal spherical harmonics at points.

    Parameters
    ----------
    lat, lon : array_like, same shape
        Point latitudes and longitudes in degrees (flattened).
    lmax : int
        Highest degree.

    Returns
    -------
    basis : ndarray ``[n_points, (lmax+1)^2]`` float64
    degree : ndarray ``[(lmax+1)^2]`` int
        Each column's degree ``l``.
    """
    from scipy.special import sph_harm_y

    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise GridError(f"real_sh_basis: lat and lon must have the same number of points, got {lat.size} and {lon.size}.")
    lmax = int(lmax)
    if lmax < 0:
        raise GridError(f"real_sh_basis: lmax must be >= 0, got {lmax}.")
    if lat.size * (lmax + 1) ** 2 > MAX_BASIS_SIZE:
        raise GridError(
            f"a spherical-harmonic basis of degree {lmax} on {lat.size} points is too large "
            f"({lat.size * (lmax + 1) ** 2:.3g} values > {MAX_BASIS_SIZE:.3g}); choose a smaller lmax."
        )
    theta = np.deg2rad(90.0 - lat)  # colatitude
    phi = np.deg2rad(lon)
    cols, degs = [], []
    for ell in range(lmax + 1):
        m = np.arange(ell + 1)
        y = sph_harm_y(ell, m[:, None], theta[None, :], phi[None, :])  # [l+1, n_points] complex
        cols.append(y[0].real[None])
        cols.append(np.sqrt(2.0) * y[1:].real)
        cols.append(np.sqrt(2.0) * y[1:].imag)
        degs.append(np.full(2 * ell + 1, ell))
    return np.concatenate(cols, axis=0).T.copy(), np.concatenate(degs)


class SphericalHarmonicTransform(nn.Module):
    """Quadrature projection of fields on a fixed grid onto real spherical harmonics.

    Parameters
    ----------
    lat, lon : array_like ``[*grid]``
        Cell-centre latitude and longitude (degrees) in the layout of the data tensors
        (lat-lon ``[nlat, nlon]``, HEALPix cells ``[npix]`` or faces ``[12, nside, nside]``).
    weights : array_like ``[*grid]``
        Cell areas (normalized here to sum 1).
    lmax : int
        Highest degree kept.

    Forward
    -------
    x : Tensor ``[..., *grid]`` -> coefficients ``[..., (lmax+1)^2]`` (float32).
    """

    def __init__(self, lat, lon, weights, lmax: int) -> None:
        super().__init__()
        lat = np.asarray(lat, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        if lat.shape != np.shape(lon) or lat.shape != w.shape:
            raise GridError(
                f"SphericalHarmonicTransform: lat {lat.shape}, lon {np.shape(lon)} and weights {w.shape} must share "
                "the grid's shape."
            )
        self.grid_shape = tuple(lat.shape)
        self.lmax = int(lmax)
        basis, degree = real_sh_basis(lat, lon, self.lmax)
        quad = basis * (4.0 * math.pi * (w.ravel() / w.sum()))[:, None]
        self.register_buffer("quadrature", torch.as_tensor(quad, dtype=torch.float32), persistent=False)
        self.register_buffer("degree", torch.as_tensor(degree, dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return f"grid={self.grid_shape}, lmax={self.lmax}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = len(self.grid_shape)
        if tuple(x.shape[-nd:]) != self.grid_shape:
            raise GridError(f"SphericalHarmonicTransform expects [..., {self.grid_shape}], got {tuple(x.shape)}.")
        return x.float().flatten(-nd) @ self.quadrature

    def per_degree(self, products: torch.Tensor) -> torch.Tensor:
        """Sum ``[..., (lmax+1)^2]`` coefficient products over ``m``: ``[..., lmax+1]``, divided by ``4 pi``."""
        out = products.new_zeros(*products.shape[:-1], self.lmax + 1)
        return out.index_add_(-1, self.degree, products) / (4.0 * math.pi)

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """Power per degree ``P_l = sum_m a_lm^2 / (4 pi)`` of ``x [..., *grid]``: ``[..., lmax+1]``."""
        a = self(x)
        return self.per_degree(a * a)
