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
    spec = zonal_power_spectrum(_field(a * np.cos(k0 * lam + 0.3 * (k0 < n / 2)), n), nyquist="parseval")
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
        spec = zonal_power_spectrum(_field(f, n), nyquist="parseval")
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


def _explicit_cell_area_band_mean(spec: xr.DataArray, lat: np.ndarray, lo: float, hi: float) -> xr.DataArray:
    """Band mean of per-row spectra weighted by the rows' exact cell areas, computed by hand:
    bounds half-way between latitudes (and at +-90), weight sin(north) - sin(south)."""
    b = np.radians(np.concatenate([[-90.0], (lat[1:] + lat[:-1]) / 2, [90.0]]))
    w = (np.sin(b[1:]) - np.sin(b[:-1])) * ((np.abs(lat) >= lo) & (np.abs(lat) <= hi))
    return (spec * xr.DataArray(w, dims="latitude", coords={"latitude": lat})).sum("latitude") / w.sum()


@pytest.mark.parametrize(
    "grid,band",
    [
        # WeatherBench2's 64x33 equiangular grid with poles, over the whole globe: the pole rows
        # are half cells with a nonzero area (cos(lat) gives them none)
        ("equiangular_with_poles", LatitudeBand("globe", 0.0, 90.0, absolute=True)),
        # a Gaussian grid, default mid-latitude band: cell areas are not proportional to cos(lat)
        ("gaussian", None),
    ],
)
def test_zonal_spectrum_is_weighted_by_cell_areas_not_cos_lat(grid, band):
    from atmos.grids import LatLonGrid

    g = LatLonGrid.equiangular(33, 64, poles=True) if grid == "equiangular_with_poles" else LatLonGrid.gaussian(32, 64)
    rng = np.random.default_rng(1)
    da = xr.DataArray(
        rng.normal(size=(2, g.nlat, g.nlon)) * (1 + np.abs(g.lat))[None, :, None],
        dims=("time", "latitude", "longitude"),
        coords={"time": np.arange(2), "latitude": g.lat, "longitude": g.lon},
    )
    metric = ZonalSpectrum() if band is None else ZonalSpectrum(band=band)
    lo, hi = (30.0, 60.0) if band is None else (band.lat_min, band.lat_max)
    got = metric.compute_chunk(da)
    spec = zonal_power_spectrum(da).drop_vars("wavelength")
    want = _explicit_cell_area_band_mean(spec, g.lat, lo, hi)
    xr.testing.assert_allclose(got, want.transpose(*got.dims), rtol=1e-10)
    cos = np.cos(np.radians(g.lat)) * ((np.abs(g.lat) >= lo) & (np.abs(g.lat) <= hi))
    cos_mean = (spec * xr.DataArray(cos, dims="latitude", coords={"latitude": g.lat})).sum("latitude") / cos.sum()
    assert float(abs(got - cos_mean).max()) > 1e-6 * float(abs(got).max())  # the test tells them apart
