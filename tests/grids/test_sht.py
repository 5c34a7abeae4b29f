"""Spherical-harmonic basis and quadrature transform on lat-lon and HEALPix grids."""

import math

import numpy as np
import pytest
import torch

from atmos.errors import GridError
from atmos.grids import HealpixGrid, LatLonGrid
from atmos.grids.sht import SphericalHarmonicTransform, real_sh_basis

LATLON = LatLonGrid(np.linspace(-87.1875, 87.1875, 32), np.arange(64) * 5.625)


def _transform(grid, lmax):
    lat, lon = grid.centers()
    return SphericalHarmonicTransform(lat, lon, grid.area_weights(), lmax)


@pytest.mark.parametrize("grid", [LATLON, HealpixGrid(16)], ids=["latlon", "healpix"])
def test_low_degree_harmonics_are_orthonormal_under_the_quadrature(grid):
    sht = _transform(grid, 6)
    basis = torch.as_tensor(real_sh_basis(*grid.centers(), 6)[0].T.reshape(-1, *grid.shape), dtype=torch.float32)
    gram = sht(basis)  # [49, 49]: a_lm of each basis function
    assert torch.allclose(gram, torch.eye(49), atol=0.02), float((gram - torch.eye(49)).abs().max())


@pytest.mark.parametrize("grid", [LATLON, HealpixGrid(16)], ids=["latlon", "healpix"])
def test_parseval_for_a_band_limited_field(grid):
    rng = np.random.default_rng(0)
    basis, degree = real_sh_basis(*grid.centers(), 8)
    coef = rng.standard_normal(basis.shape[1])
    field = torch.as_tensor((basis @ coef).reshape(grid.shape), dtype=torch.float32)
    sht = _transform(grid, 8)
    power = sht.power(field)
    area_mean_sq = float((field**2 * torch.as_tensor(grid.area_weights(), dtype=torch.float32)).sum())
    assert power.shape == (9,)
    assert float(power.sum()) == pytest.approx(area_mean_sq, rel=0.02)
    expected = np.bincount(degree, weights=coef**2) / (4 * math.pi)
    np.testing.assert_allclose(power.numpy(), expected, rtol=0.05, atol=1e-3 * expected.max())


def test_rotation_in_longitude_keeps_the_power_per_degree():
    grid = LATLON
    rng = np.random.default_rng(1)
    basis, _ = real_sh_basis(*grid.centers(), 10)
    field = torch.as_tensor((basis @ rng.standard_normal(basis.shape[1])).reshape(grid.shape), dtype=torch.float32)
    sht = _transform(grid, 10)
    shifted = torch.roll(field, 7, dims=-1)  # a rotation about the pole by 7 grid columns
    torch.testing.assert_close(sht.power(shifted), sht.power(field), rtol=1e-3, atol=1e-5)


def test_shape_errors_name_the_grid():
    sht = _transform(LATLON, 4)
    with pytest.raises(GridError, match=r"\(32, 64\)"):
        sht(torch.zeros(2, 16, 64))
    with pytest.raises(GridError, match="lmax"):
        real_sh_basis(np.zeros(3), np.zeros(3), -1)
