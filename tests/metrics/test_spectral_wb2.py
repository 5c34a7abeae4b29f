"""The zonal spectrum equals WeatherBench2's ``ZonalEnergySpectrum`` (radius 6,367,500 m, Nyquist doubled).

weatherbench2 cannot be installed here (not on the package index), so the reference is an
independent implementation of WB2's documented formula (``derived_variables.ZonalEnergySpectrum``
with ``schema.EARTH_RADIUS_M = 1000 * (6357 + 6378) / 2``): an explicit DFT
``F[k] = (1/L) sum_l f[l] exp(-2 pi i k l / L)`` (a matrix product, not an FFT),
``S[0] = C |F[0]|^2``, ``S[k] = 2 C |F[k]|^2`` for ``0 < k <= L // 2``,
``C = 2 pi R cos(lat)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmos.errors import ConfigError
from atmos.metrics.spectral import EARTH_RADIUS_M, ZonalSpectrum, zonal_power_spectrum

WB2_EARTH_RADIUS_M = 1000 * (6357 + 6378) / 2


def wb2_spectrum(values: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """WB2 ZonalEnergySpectrum of ``values[..., latitude, longitude]``: ``[..., latitude, k]``."""
    n = values.shape[-1]
    k = np.arange(n // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n), k) / n) / n
    fk = values.astype(np.float64) @ dft
    weights = np.where(k == 0, 1.0, 2.0)
    circ = 2 * np.pi * WB2_EARTH_RADIUS_M * np.cos(np.deg2rad(lat))
    return np.abs(fk) ** 2 * weights * circ[:, None]


def test_radius_is_wb2s():
    assert EARTH_RADIUS_M == WB2_EARTH_RADIUS_M == 6_367_500.0


@pytest.mark.parametrize("n", [16, 17, 64])
def test_random_fields_match_wb2(n):
    rng = np.random.default_rng(n)
    lat = np.array([-60.0, -20.0, 0.0, 45.0])
    f = rng.normal(size=(3, lat.size, n)) + 2.0
    da = xr.DataArray(f, dims=("time", "latitude", "longitude"),
                      coords={"latitude": lat, "longitude": np.arange(n) * 360.0 / n})
    got = zonal_power_spectrum(da).transpose("time", "latitude", "zonal_wavenumber").values
    ref = wb2_spectrum(f, lat)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    par = zonal_power_spectrum(da, nyquist="parseval").transpose("time", "latitude", "zonal_wavenumber").values
    np.testing.assert_allclose(par[..., : (n + 1) // 2], ref[..., : (n + 1) // 2], rtol=1e-12)
    if n % 2 == 0:
        np.testing.assert_allclose(par[..., -1], ref[..., -1] / 2, rtol=1e-12)
    with pytest.raises(ConfigError, match="parseval"):
        zonal_power_spectrum(da, nyquist="double")


_CUBE = Path(os.environ.get("ATMOS_DATA", "")) / "speedy-world-2018.zarr"


@pytest.mark.skipif(not os.environ.get("ATMOS_DATA") or not _CUBE.exists(), reason="needs ATMOS_DATA (SPEEDY-world)")
def test_speedy_world_2018_matches_wb2():
    import atmos

    ds = atmos.open_dataset(str(_CUBE)).isel(time=slice(0, 40))
    for da in (ds["geopotential"].sel(level=500), ds["2m_temperature"], ds["u_component_of_wind"].sel(level=850)):
        da = da.load()
        got = zonal_power_spectrum(da).transpose("time", "latitude", "zonal_wavenumber").values
        ref = wb2_spectrum(da.values, da["latitude"].values)
        # relative to each value, floored at 1e-12 of its row's total power (rows whose Nyquist
        # coefficient vanishes hold round-off only)
        floor = 1e-12 * ref.sum(-1, keepdims=True)
        assert float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor))) <= 1e-6, da.name
    band = ZonalSpectrum().compute(ds[["geopotential"]].sel(level=500).load())
    assert band["geopotential"].sizes["zonal_wavenumber"] == 33
