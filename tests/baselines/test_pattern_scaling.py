"""Linear pattern scaling: planted patterns, the GMST invariant, a per-cell numpy oracle, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.baselines import GlobalDriverRegression, PatternScaling, ensemble_mean, gmst
from atmos.errors import ConfigError, DataError, GridError
from atmos.io.coords import global_mean

LAT = np.linspace(-85.0, 85.0, 18)
LON = np.arange(0.0, 360.0, 15.0)
HIST = np.arange(1850, 2015)
SSP = np.arange(2015, 2101)


def _latlon(values: np.ndarray, years: np.ndarray, name: str = "tas", members: list[str] | None = None) -> xr.Dataset:
    dims = ("time", "latitude", "longitude")
    coords = {"time": years, "latitude": LAT, "longitude": LON}
    if members is not None:
        dims = ("member", *dims)
        coords["member"] = members
    return xr.Dataset({name: (dims, values, {"units": "K"})}, coords=coords)


def _series(values: np.ndarray, years: np.ndarray, name: str = "driver") -> xr.DataArray:
    return xr.DataArray(values, dims=("time",), coords={"time": years}, name=name)


@pytest.fixture
def planted():
    """A known pattern a + b T + (c T^2), two scenarios of different lengths, members in one."""
    rng = np.random.default_rng(0)
    a = rng.normal(280.0, 10.0, (LAT.size, LON.size))
    b = rng.normal(1.0, 0.6, (LAT.size, LON.size))
    c = rng.normal(0.0, 0.1, (LAT.size, LON.size))
    t_hist = np.linspace(0.0, 1.2, HIST.size) + 0.15 * np.sin(HIST / 3.0)
    t_ssp = np.linspace(1.2, 4.5, SSP.size) + 0.1 * np.cos(SSP / 2.0)
    return {"a": a, "b": b, "c": c, "T": {"historical": t_hist, "ssp585": t_ssp}}


def _fields(p, quad: bool = False, noise: float = 0.0, seed: int = 1) -> dict[str, xr.Dataset]:
    rng = np.random.default_rng(seed)
    out = {}
    for scen, years in (("historical", HIST), ("ssp585", SSP)):
        t = p["T"][scen][:, None, None]
        f = p["a"] + p["b"] * t + (p["c"] * t**2 if quad else 0.0)
        if scen == "historical":  # two members: noise that cancels in the ensemble mean
            e = noise * rng.normal(size=f.shape)
            out[scen] = _latlon(np.stack([f + e, f - e]), years, members=["r1", "r2"])
        else:
            out[scen] = _latlon(f + noise * rng.normal(size=f.shape), years)
    return out


def _drivers(p) -> dict[str, xr.DataArray]:
    return {s: _series(p["T"][s], HIST if s == "historical" else SSP, "T") for s in p["T"]}


def test_recovers_planted_linear_pattern_exactly(planted):
    ps = PatternScaling().fit(_drivers(planted), _fields(planted))
    c = ps.coefficients["tas"]
    assert c.dims == ("degree", "latitude", "longitude")
    np.testing.assert_allclose(c.sel(degree=0), planted["a"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(c.sel(degree=1), planted["b"], rtol=0, atol=1e-9)
    assert ps.coefficients.attrs["training_samples"] == HIST.size + SSP.size
    # and it predicts any new driver exactly
    t = np.linspace(0, 6, 30)
    pred = ps.predict(_series(t, np.arange(2071, 2101)))
    np.testing.assert_allclose(pred["tas"].values, planted["a"] + planted["b"] * t[:, None, None], atol=1e-8)
    assert pred["tas"].dims == ("time", "latitude", "longitude") and pred["tas"].attrs["units"] == "K"


def test_recovers_planted_quadratic_pattern(planted):
    ps = PatternScaling(degree=2).fit(_drivers(planted), _fields(planted, quad=True))
    c = ps.coefficients["tas"]
    for k, key in enumerate("abc"):
        np.testing.assert_allclose(c.sel(degree=k), planted[key], rtol=0, atol=1e-7)


def test_true_gmst_global_mean_of_prediction_equals_driver(planted):
    fields = _fields(planted, noise=0.7)
    g = gmst(fields)
    assert set(g) == {"historical", "ssp585"} and g["ssp585"].dims == ("time",)
    for degree in (1, 2):
        ps = PatternScaling(degree=degree).fit(g, fields)
        gm_coef = global_mean(ps.coefficients["tas"]).values
        expected = np.zeros(degree + 1)
        expected[1] = 1.0
        np.testing.assert_allclose(gm_coef, expected, atol=1e-8)  # fields are ~280 K: 1e-8 is ~1e-11 relative
        new = _series(np.linspace(-1.0, 7.0, 40), np.arange(2061, 2101), "gmst")
        pred = ps.predict(new)
        np.testing.assert_allclose(global_mean(pred["tas"]).values, new.values, atol=1e-10)


def test_matches_per_cell_numpy_polyfit_with_missing_values(planted):
    fields = _fields(planted, noise=0.5)
    ds = xr.concat(list(fields.values()), dim=xr.Variable("scenario", list(fields)), join="outer")
    # knock out some values: these cells take the masked (normal-equation) path
    rng = np.random.default_rng(3)
    vals = ds["tas"].values.copy()
    holes = rng.random(vals.shape) < 0.02
    vals[holes] = np.nan
    ds["tas"].values = vals
    driver = xr.concat(list(_drivers(planted).values()), dim=xr.Variable("scenario", list(fields)), join="outer")
    ps = PatternScaling().fit(driver, ds)
    y = ensemble_mean(ds["tas"]).values.reshape(-1, LAT.size * LON.size)
    x = driver.values.ravel()
    coef = ps.coefficients["tas"].values.reshape(2, -1)
    assert np.isnan(y).any(axis=0).sum() > 10  # the masked path ran
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j]) & np.isfinite(x)
        slope, icpt = np.polyfit(x[ok], y[ok, j], 1)
        assert coef[0, j] == pytest.approx(icpt, abs=1e-9)
        assert coef[1, j] == pytest.approx(slope, abs=1e-9)


def test_padded_scenario_arrays_equal_mappings(planted):
    fields = _fields(planted, noise=0.5)
    ds = xr.concat(list(fields.values()), dim=xr.Variable("scenario", list(fields)), join="outer")
    g = gmst(ds)  # NaN-padded (scenario, time)
    assert g.dims == ("scenario", "time") and int(g.isnull().sum()) == SSP.size + HIST.size
    padded = PatternScaling().fit(g, ds)
    mapped = PatternScaling().fit(gmst(fields), fields)
    xr.testing.assert_allclose(padded.coefficients["tas"], mapped.coefficients["tas"])
    assert padded.coefficients.attrs["training_samples"] == HIST.size + SSP.size


def test_ensemble_mean_is_taken_over_members(planted):
    fields = _fields(planted, noise=0.3)
    drivers = _drivers(planted)
    ps_members = PatternScaling().fit(drivers, fields)
    ps_mean = PatternScaling().fit(drivers, {s: ensemble_mean(f) for s, f in fields.items()})
    xr.testing.assert_allclose(ps_members.coefficients["tas"], ps_mean.coefficients["tas"])


def test_healpix_cells_and_all_variables_use_the_gmst_of_tas():
    nside = 2
    npix = 12 * nside**2
    rng = np.random.default_rng(5)
    a_t, b_t = rng.normal(size=npix), rng.normal(1.0, 0.3, npix)
    b_t += 1.0 - b_t.mean()  # equal-area cells: weighted slope exactly 1, so gmst == T
    a_t -= a_t.mean()
    a_p, b_p = rng.normal(3.0, 1.0, npix), rng.normal(0.1, 0.05, npix)
    years = np.arange(2000, 2060)
    t = np.linspace(0.0, 3.0, years.size) + 0.2 * np.sin(years)
    ids = xr.DataArray(np.arange(npix), dims="cell",
                       attrs={"grid_name": "healpix", "level": 1, "indexing_scheme": "nested"})
    ds = xr.Dataset(
        {"tas": (("time", "cell"), a_t + b_t * t[:, None]), "pr": (("time", "cell"), a_p + b_p * t[:, None])},
        coords={"time": years, "cell_ids": ids},
    )
    np.testing.assert_allclose(gmst(ds).values, t, atol=1e-12)
    driver = _series(100.0 + 20.0 * t, years, "cum_co2")  # exact linear stage 1
    ps = PatternScaling(stage1=True).fit(driver, ds)
    np.testing.assert_allclose(ps.stage1.coef_, [-5.0, 0.05], atol=1e-10)
    np.testing.assert_allclose(ps.coefficients["pr"].sel(degree=1), b_p, atol=1e-10)  # pr ~ GMST of tas
    np.testing.assert_allclose(ps.coefficients["pr"].sel(degree=0), a_p, atol=1e-9)
    assert ps.coefficients["pr"].dims == ("degree", "cell")
    pred = ps.predict(driver)
    np.testing.assert_allclose(pred["pr"].values, ds["pr"].values, atol=1e-9)
    assert pred["cell_ids"].attrs["level"] == 1


def test_stage1_two_stage_prediction(planted):
    fields = _fields(planted, noise=0.2)
    g = {s: gmst(f) for s, f in fields.items()}
    cum = {s: _series(np.cumsum(np.exp(g[s].values)), g[s].time.values, "cum_co2") for s in g}
    ps = PatternScaling(stage1=GlobalDriverRegression()).fit(cum, fields)
    ref = GlobalDriverRegression().fit(cum, g)
    np.testing.assert_allclose(ps.stage1.coef_, ref.coef_)
    ps_true = PatternScaling().fit(g, fields)
    xr.testing.assert_allclose(ps.coefficients["tas"], ps_true.coefficients["tas"])  # trained on true GMST
    out = ps.predict(cum)
    assert set(out) == {"historical", "ssp585"}  # mapping in, mapping out
    expected = ps.predict_from_gmst(ps.predict_gmst(cum["ssp585"]))
    xr.testing.assert_allclose(out["ssp585"], expected)
    with pytest.raises(ConfigError, match="stage 1"):
        PatternScaling().fit(g, fields).predict_gmst(g["ssp585"])


def test_coefficients_save_load_round_trip(tmp_path, planted):
    fields = _fields(planted, noise=0.4)
    g = {s: gmst(f) for s, f in fields.items()}
    cum = {s: _series(np.linspace(0, 1, g[s].size) + 5 * g[s].values, g[s].time.values, "cum_co2") for s in g}
    ps = PatternScaling(degree=2, stage1=True).fit(cum, fields)
    path = tmp_path / "coeffs.nc"
    ps.save(path)
    back = PatternScaling.load(path)
    # the file adds CF Conventions and a history line; everything else is identical
    assert back.coefficients.attrs.pop("Conventions") == "CF-1.11"
    assert "atmos pattern scaling" in back.coefficients.attrs.pop("history")
    xr.testing.assert_identical(back.coefficients, ps.coefficients)
    assert back.degree == 2 and back.stage1 is not None and back.stage1.driver_name == "cum_co2"
    np.testing.assert_array_equal(back.stage1.coef_, ps.stage1.coef_)
    xr.testing.assert_identical(back.predict(cum["ssp585"]), ps.predict(cum["ssp585"]))
    with pytest.raises(DataError, match="degree"):
        PatternScaling.from_coefficients(xr.Dataset({"tas": ("x", [1.0])}))


def test_mismatched_times_are_an_error(planted):
    fields = _fields(planted)
    drivers = _drivers(planted)
    drivers["ssp585"] = drivers["ssp585"].isel(time=slice(0, -5))
    with pytest.raises(DataError, match="'time' coordinate"):
        PatternScaling().fit(drivers, fields)
    with pytest.raises(DataError, match="no 'scenario' dimension"):
        PatternScaling().fit(_drivers(planted)["ssp585"], fields)


def test_mismatched_grids_are_an_error(planted):
    fields = _fields(planted)
    fields["ssp585"] = fields["ssp585"].assign_coords(latitude=LAT + 1.0)
    with pytest.raises(GridError, match="'latitude'"):
        PatternScaling().fit(_drivers(planted), fields)


def test_driver_with_nan_is_an_error(planted):
    drivers = _drivers(planted)
    vals = drivers["historical"].values.copy()
    vals[10] = np.nan
    drivers["historical"] = drivers["historical"].copy(data=vals)
    with pytest.raises(DataError, match=r"NaN.*time=1860"):
        PatternScaling().fit(drivers, _fields(planted))
    with pytest.raises(DataError, match=r"NaN.*stage-1|NaN"):
        PatternScaling(stage1=True).fit(drivers, _fields(planted))
    ps = PatternScaling().fit(_drivers(planted), _fields(planted))
    with pytest.raises(DataError, match="NaN"):
        ps.predict(drivers["historical"])


def test_other_bad_inputs(planted):
    fields = _fields(planted)
    with pytest.raises(DataError, match="distinct"):
        PatternScaling().fit({s: d * 0 + 1.0 for s, d in _drivers(planted).items()}, fields)
    with pytest.raises(ConfigError, match="degree"):
        PatternScaling(degree=0)
    with pytest.raises(ConfigError, match="not fitted"):
        PatternScaling().predict(_drivers(planted)["ssp585"])
    with pytest.raises(DataError, match="dims"):
        PatternScaling().fit({s: f["tas"].isel(member=0) if "member" in f.dims else f["tas"]
                              for s, f in fields.items()}, fields)
    with pytest.raises(DataError, match="temperature variable"):
        gmst(fields["ssp585"].rename(tas="pr"))
    with pytest.raises(ConfigError, match="only used with stage 1"):
        PatternScaling().fit(_drivers(planted), fields, gmst=_drivers(planted))
