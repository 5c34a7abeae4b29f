"""Zonal power spectra: a single wave peaks at its wavenumber with the right power; Parseval; band means."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.errors import GridError
from atmos.metrics import LatitudeBand, ZonalSpectrum, zonal_power_spectrum
from atmos.metrics.spectral import EARTH_RADIUS_M

LAT = np.array([-60.0, -20.0, 20.0, 60.0])


def _lon(n: int) -> np.ndarray:
    return np.arange(n) * 360.0 / n


def _field(values: np.ndarray, n: int) -> xr.DataArray:
    return xr.DataArray(values, dims=("latitude", "longitude"), coords={"latitude": LAT, "longitude": _lon(n)})


def _circ(lat) -> np.ndarray:
    return 2 * np.pi * EARTH_RADIUS_M * np.cos(np.deg2rad(np.asarray(lat)))


@pytest.mark.parametrize("n,k0", [(64, 5), (64, 1), (45, 7), (64, 32)])
def test_single_wave_peaks_at_its_wavenumber_with_parseval_power(n, k0):
    a = np.array([1.0, 2.0, 3.0, 0.5])[:, None]
    lam = np.deg2rad(_lon(n))[None, :]
    spec = zonal_power_spectrum(_field(a * np.cos(k0 * lam + 0.3 * (k0 < n / 2)), n))
    assert spec.sizes["zonal_wavenumber"] == n // 2 + 1
    peak = spec.argmax("zonal_wavenumber").values
    np.testing.assert_array_equal(peak, k0)
    mean_sq = (a[:, 0] ** 2) * (np.cos(0.3 * (k0 < n / 2)) ** 2 if k0 == n / 2 else 0.5)
    np.testing.assert_allclose(spec.sel(zonal_wavenumber=k0).values, _circ(LAT) * mean_sq, rtol=1e-10)
    others = spec.drop_sel(zonal_wavenumber=k0)
    assert float(abs(others).max()) < 1e-9 * float(spec.max())


def test_parseval_on_random_fields():
    rng = np.random.default_rng(0)
    for n in (16, 17):
        f = rng.normal(size=(4, n)) + 3.0
        spec = zonal_power_spectrum(_field(f, n))
        # sum_k S[k] = (C / L) sum_l f_l^2
        np.testing.assert_allclose(spec.sum("zonal_wavenumber").values, _circ(LAT) * (f**2).mean(1), rtol=1e-12)
        np.testing.assert_allclose(spec.sel(zonal_wavenumber=0).values, _circ(LAT) * f.mean(1) ** 2, rtol=1e-12)
    assert spec["wavelength"].sel(latitude=20.0, zonal_wavenumber=2) == pytest.approx(_circ(20.0) / 2)


def test_zonal_spectrum_band_average_and_time_mean():
    n = 32
    lam = np.deg2rad(_lon(n))
    amp = np.array([1.0, 5.0, 5.0, 2.0])  # different amplitude per latitude
    vals = np.stack([amp[:, None] * np.cos(3 * lam)[None, :] * s for s in (1.0, 2.0)])  # two init times
    ds = xr.DataArray(vals, dims=("time", "latitude", "longitude"),
                      coords={"time": [0, 1], "latitude": LAT, "longitude": _lon(n)}).to_dataset(name="z")
    out = ZonalSpectrum().compute(ds)  # default band 30 <= |lat| <= 60: rows -60 and 60 only
    w = np.cos(np.deg2rad([60.0, 60.0]))
    per_lat = _circ([60.0, 60.0]) * np.array([1.0, 2.0]) ** 2 / 2
    want = np.mean([1.0, 4.0]) * np.sum(w * per_lat) / w.sum()
    assert float(out["z"].sel(zonal_wavenumber=3)) == pytest.approx(want, rel=1e-10)
    tropics = ZonalSpectrum(band=LatitudeBand("t", 0, 30, absolute=True)).compute(ds)
    assert float(tropics["z"].sel(zonal_wavenumber=3)) == pytest.approx(2.5 * _circ(20.0) * 25 / 2, rel=1e-10)


def test_spectrum_rejects_bad_grids():
    with pytest.raises(GridError, match="equally spaced"):
        zonal_power_spectrum(xr.DataArray(np.zeros((4, 3)), dims=("latitude", "longitude"),
                                          coords={"latitude": LAT, "longitude": [0.0, 10.0, 30.0]}))
    with pytest.raises(GridError, match="HEALPix"):
        zonal_power_spectrum(xr.DataArray(np.zeros(48), dims=("cell",)))
