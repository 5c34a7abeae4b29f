"""atmos.open_dataset on anemoi-datasets stores (atmos.io.anemoi).

Two kinds of store:

* made by ``anemoi-datasets create`` itself, from netCDF files of SPEEDY-world
  (``anemoi.datasets`` installed and the SPEEDY cubes present, else skipped);
* written here with zarr in exactly the layout anemoi-datasets writes (``data(time,
  variable, ensemble, cell)``, ``dates``, ``latitudes``, ``longitudes``, ``mean`` ...
  and the group attributes ``variables``, ``variables_metadata``, ``frequency`` ...):
  synthetic ones (ensembles, HEALPix and unstructured grids, tendency statistics) that
  need nothing else, and one of SPEEDY-world. Where anemoi-datasets is installed the
  hand-written layout is checked against what ``create`` writes and read back with
  ``anemoi.datasets.open_dataset``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmos.errors import DataError, SourceError
from atmos.io.anemoi import anemoi_stats, anemoi_variable, is_anemoi_store, open_anemoi
from atmos.io.coords import grid_of
from atmos.io.open import open_dataset

SPEEDY_VAL = "speedy-world-2019-12.zarr"
#: Period of the SPEEDY stores: the sample model rolls out 1 day from 2020-01-01 00 UTC.
START, END = "2019-12-31T18:00", "2020-01-01T06:00"
#: ECMWF short names of SPEEDY-world's variables (pressure levels, then single level, then statics).
PL = {"z": "geopotential", "t": "temperature", "u": "u_component_of_wind", "v": "v_component_of_wind",
      "q": "specific_humidity"}
SFC = {"2t": "2m_temperature", "msl": "mean_sea_level_pressure", "10u": "10m_u_component_of_wind",
       "10v": "10m_v_component_of_wind", "tisr": "toa_incident_solar_radiation",
       "tp": "total_precipitation_6hr", "tcwv": "total_column_water_vapour"}
STATIC = {"lsm": "land_sea_mask", "z": "geopotential_at_surface"}
LEVELS = (250, 500, 700, 850, 1000)


# -- a hand-written anemoi-datasets store ------------------------------------------------------
def write_anemoi_store(
    path: Path,
    fields: dict[str, np.ndarray],
    dates: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    metadata: dict[str, dict] | None = None,
    frequency: str = "6h",
    tendencies: bool = False,
) -> Path:
    """Write a store in anemoi-datasets' gridded layout (what ``anemoi-datasets create`` writes).

    ``fields``: anemoi name -> ``[time, ensemble, cell]`` array. Statistics over all dates,
    unweighted, like anemoi's (its default statistics period ends a day earlier on
    short stores; all dates here).
    """
    import zarr

    names = sorted(fields)
    data = np.stack([fields[n] for n in names], axis=1).astype(np.float32)  # time, variable, ensemble, cell
    g = zarr.open_group(str(path), mode="w", zarr_format=2)

    def add(name, values, dims, chunks=None, fill=None):
        a = g.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks or values.shape,
                           fill_value=fill)
        a[...] = values
        a.attrs["_ARRAY_DIMENSIONS"] = list(dims)

    add("data", data, ("time", "variable", "ensemble", "cell"), chunks=(1, *data.shape[1:]), fill=np.nan)
    add("dates", np.asarray(dates, dtype="datetime64[s]"), ("time",))
    add("latitudes", np.asarray(lat, np.float64), ("cell",), fill=0.0)
    add("longitudes", np.asarray(lon, np.float64), ("cell",), fill=0.0)
    flat = data.transpose(1, 0, 2, 3).reshape(len(names), -1).astype(np.float64)
    for key, fn in (("mean", np.mean), ("stdev", np.std), ("minimum", np.min), ("maximum", np.max)):
        add(key, fn(flat, axis=1), ("variable",), fill=0.0)
    if tendencies:
        d = np.diff(data.astype(np.float64), axis=0).transpose(1, 0, 2, 3).reshape(len(names), -1)
        for key, fn in (("mean", np.mean), ("stdev", np.std), ("minimum", np.min), ("maximum", np.max)):
            add(f"statistics_tendencies_{frequency}_{key}", fn(d, axis=1), ("variable",), fill=0.0)
    meta = metadata or {}
    g.attrs.update({
        "variables": names,
        "variables_metadata": {n: meta.get(n, {}) for n in names},
        "frequency": frequency,
        "resolution": None,
        "start_date": str(np.datetime64(dates[0], "s")),
        "end_date": str(np.datetime64(dates[-1], "s")),
        "statistics_start_date": str(np.datetime64(dates[0], "s")),
        "statistics_end_date": str(np.datetime64(dates[-1], "s")),
        "missing_dates": [],
        "dimensions": ["dates", "variables", "ensembles", "values"],
        "remapping": {"param_level": "{param}_{levelist}"},
        "constant_fields": [n for n in names if meta.get(n, {}).get("constant_in_time")],
        "version": "0.22",
    })
    return path


def _mars(param: str, units: str, level: int | None = None, constant: bool = False) -> dict:
    m = {"mars": {"param": param, "levtype": "pl" if level else "sfc", "units": units}, "units": units}
    if level:
        m["mars"]["levelist"] = level
    if constant:
        m["constant_in_time"] = True
    return m


# -- SPEEDY-world ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speedy() -> xr.Dataset:
    root = os.environ.get("ATMOS_DATA")
    if not root or not (Path(root) / SPEEDY_VAL).exists():
        pytest.skip(f"SPEEDY-world data not available ({SPEEDY_VAL} not under $ATMOS_DATA)")
    ds = xr.open_zarr(Path(root) / SPEEDY_VAL).sel(time=slice(START, END))
    return ds.transpose("time", "level", "latitude", "longitude").load()


def _speedy_fields(ds: xr.Dataset) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """anemoi fields of SPEEDY-world on a north-to-south row-major grid (as ERA5 GRIB)."""
    ds = ds.isel(latitude=slice(None, None, -1))
    lat2, lon2 = np.meshgrid(ds.latitude.values, ds.longitude.values, indexing="ij")
    nt = ds.sizes["time"]
    fields, meta = {}, {}
    for p, n in PL.items():
        for lv in LEVELS:
            fields[f"{p}_{lv}"] = ds[n].sel(level=lv).values.reshape(nt, 1, -1)
            meta[f"{p}_{lv}"] = _mars(p, ds[n].attrs["units"], lv)
    for p, n in SFC.items():
        fields[p] = ds[n].values.reshape(nt, 1, -1)
        meta[p] = _mars(p, ds[n].attrs["units"])
    for p, n in STATIC.items():
        fields[p] = np.broadcast_to(ds[n].values.reshape(1, 1, -1), (nt, 1, lat2.size))
        meta[p] = _mars(p, ds[n].attrs["units"], constant=True)
    return fields, meta, lat2.ravel(), lon2.ravel()


@pytest.fixture(scope="module")
def hand_store(speedy, tmp_path_factory) -> Path:
    fields, meta, lat, lon = _speedy_fields(speedy)
    path = tmp_path_factory.mktemp("anemoi") / "speedy-hand.zarr"
    return write_anemoi_store(path, fields, speedy.time.values, lat, lon, metadata=meta, tendencies=True)


@pytest.fixture(scope="module")
def created_store(speedy, tmp_path_factory) -> Path:
    """A store made by ``anemoi-datasets create`` from netCDF files of SPEEDY-world."""
    pytest.importorskip("anemoi.datasets")
    pytest.importorskip("earthkit.data")
    work = tmp_path_factory.mktemp("anemoi-create")
    ds = speedy.isel(latitude=slice(None, None, -1))  # north to south, as ERA5
    coords = {"latitude": {"units": "degrees_north", "standard_name": "latitude"},
              "longitude": {"units": "degrees_east", "standard_name": "longitude"}}

    def save(name, variables):
        out = xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in v.dims]) for k, v in variables.items()})
        for c, a in coords.items():
            out[c].attrs = a
        if "level" in out.dims:
            out["level"].attrs = {"units": "hPa", "standard_name": "air_pressure", "long_name": "pressure_level"}
        for v in out.data_vars:
            out[v].encoding = {}
        out.to_netcdf(work / f"{name}.nc")

    save("pl", {p: ds[n].assign_attrs(units=ds[n].attrs["units"]) for p, n in PL.items()})
    save("sfc", {p: ds[n] for p, n in SFC.items()})
    save("static", {p: ds[n].expand_dims(time=ds.time).transpose("time", ...) for p, n in STATIC.items()})
    recipe = work / "recipe.yaml"
    recipe.write_text(
        "name: speedy-world-test\n"
        "description: SPEEDY-world test store for atmos\n"
        f"dates: {{start: {START}:00, end: {END}:00, frequency: 6h}}\n"
        "statistics: {tendencies: [6]}\n"
        "input:\n  join:\n"
        + "".join(f"    - netcdf: {{path: {work / n}.nc}}\n" for n in ("pl", "sfc", "static"))
    )
    out = work / "speedy-created.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "anemoi.datasets", "create", str(recipe), str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _ref(speedy: xr.Dataset) -> xr.Dataset:
    return open_dataset(speedy)


def _assert_same_cube(ds: xr.Dataset, ref: xr.Dataset) -> float:
    worst = 0.0
    assert set(ds.data_vars) == set(PL.values()) | set(SFC.values()) | set(STATIC.values())
    for name, da in ds.data_vars.items():
        r = ref[name]
        assert da.dims == r.dims, (name, da.dims, r.dims)
        assert da.attrs["units"] == r.attrs["units"], name
        diff = float(np.nanmax(np.abs(da.values.astype(np.float64) - r.values.astype(np.float64))))
        worst = max(worst, diff)
    assert np.array_equal(ds.latitude.values, ref.latitude.values)
    assert np.array_equal(ds.longitude.values, ref.longitude.values)
    assert np.array_equal(ds.time.values, ref.time.values)
    assert list(ds.level.values) == list(LEVELS)
    return worst


def test_created_store_opens_as_the_canonical_cube(created_store, speedy):
    assert is_anemoi_store(created_store)
    ds = open_dataset(created_store)
    assert ds.attrs["anemoi_grid"] == "latlon" and ds.attrs["anemoi_frequency"] == "6h"
    assert ds["land_sea_mask"].dims == ("latitude", "longitude")
    assert ds["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert np.all(np.diff(ds.latitude.values) > 0)
    assert _assert_same_cube(ds, _ref(speedy)) == 0.0  # float32 copied, bit for bit
    assert ds.identical(open_anemoi(created_store))


def test_hand_written_layout_matches_anemoi_create(created_store, hand_store):
    """The synthetic stores of this module have the layout ``anemoi-datasets create`` writes."""
    import zarr

    a = zarr.open_group(str(created_store), mode="r")
    b = zarr.open_group(str(hand_store), mode="r")
    for key in ("data", "dates", "latitudes", "longitudes", "mean", "stdev", "minimum", "maximum",
                "statistics_tendencies_6h_mean", "statistics_tendencies_6h_stdev"):
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert a[key].attrs["_ARRAY_DIMENSIONS"] == b[key].attrs["_ARRAY_DIMENSIONS"], key
    assert list(a.attrs["variables"]) == list(b.attrs["variables"])
    np.testing.assert_array_equal(a["data"][:], b["data"][:])
    np.testing.assert_array_equal(a["latitudes"][:], b["latitudes"][:])
    np.testing.assert_array_equal(a["longitudes"][:], b["longitudes"][:])
    for name in ("z_500", "2t", "lsm", "z"):
        ma, mb = a.attrs["variables_metadata"][name], b.attrs["variables_metadata"][name]
        assert {k: ma["mars"][k] for k in ("param", "levtype")} == {k: mb["mars"][k] for k in ("param", "levtype")}
        assert ma.get("constant_in_time", False) == mb.get("constant_in_time", False)


def test_anemoi_reads_the_hand_written_store(hand_store, speedy):
    anemoi = pytest.importorskip("anemoi.datasets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = anemoi.open_dataset(str(hand_store))
        i = ad.name_to_index["t_850"]
        got = ad[2][i, 0].reshape(32, 64)[::-1]  # north-to-south rows
    want = speedy["temperature"].sel(level=850).isel(time=2).transpose("latitude", "longitude").values
    np.testing.assert_array_equal(got, want)
    assert ad.frequency.total_seconds() == 6 * 3600 and list(ad.dates) == list(speedy.time.values.astype("datetime64[s]"))


def test_hand_store_opens_as_the_canonical_cube(hand_store, speedy):
    ds = open_dataset(hand_store)
    assert _assert_same_cube(ds, _ref(speedy)) == 0.0
    assert "time" not in ds["geopotential_at_surface"].dims
    assert ds["geopotential"].attrs["atmos_original_name"].startswith("z_250")


@pytest.mark.parametrize("which", ["created", "hand"])
def test_rollout_from_anemoi_store_equals_rollout_from_speedy(which, request, speedy):
    store = request.getfixturevalue("created_store" if which == "created" else "hand_store")
    from atmos.rollout import rollout

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = rollout(None, open_dataset(store), "2020-01-01", 1)
        fb = rollout(None, _ref(speedy), "2020-01-01", 1)
    assert set(fa.data_vars) == set(fb.data_vars) and fa.sizes == fb.sizes
    for name in fb.data_vars:
        a, b = fa[name].values.astype(np.float64), fb[name].values.astype(np.float64)
        scale = float(np.abs(b).max())
        err = float(np.abs(a - b).max())
        assert err <= 1e-6 * scale, (name, err)  # float32 tolerance (in practice 0: same inputs)


def test_stats_of_created_store(created_store, speedy):
    import zarr

    g = zarr.open_group(str(created_store), mode="r")
    names = list(g.attrs["variables"])
    st = anemoi_stats(created_store)
    assert list(st.statistic.values) == ["mean", "std", "residual_mean", "residual_std"]
    assert st["geopotential"].dims == ("statistic", "level") and list(st.level.values) == list(LEVELS)
    i = names.index("t_850")
    assert st["temperature"].sel(statistic="mean", level=850) == g["mean"][i]
    assert st["temperature"].sel(statistic="std", level=850) == g["stdev"][i]
    assert st["temperature"].sel(statistic="residual_std", level=850) == g["statistics_tendencies_6h_stdev"][i]
    assert np.isnan(st["land_sea_mask"].sel(statistic="residual_mean"))  # statics: no residual stats
    # anemoi's statistics: unweighted over the statistics period
    t = speedy["2m_temperature"].sel(time=slice(g.attrs["statistics_start_date"], g.attrs["statistics_end_date"]))
    np.testing.assert_allclose(st["2m_temperature"].sel(statistic="mean"), float(t.values.astype(np.float64).mean()),
                               rtol=1e-9)
    assert st.attrs["n_time"] == t.sizes["time"] and st.attrs["grid"] == "LatLonGrid"
    assert st["mean_sea_level_pressure"].attrs["units"] == "Pa"
    # usable as atmos statistics
    from atmos.io.stats import normalize

    ds = open_dataset(created_store, variables=["temperature"])
    z = normalize(ds, st, "residual").compute()
    assert np.isfinite(z["temperature"].values).all()


# -- synthetic stores (no SPEEDY data, no anemoi-datasets needed) ---------------------------------------------
def _synthetic(tmp_path, lat, lon, *, members=1, nt=3, tendencies=False, extra=None, units=None):
    rng = np.random.default_rng(0)
    n = lat.size
    fields = {
        "t_500": 250 + rng.standard_normal((nt, members, n)),
        "t_850": 270 + rng.standard_normal((nt, members, n)),
        "2t": 280 + rng.standard_normal((nt, members, n)),
        "lsm": np.broadcast_to((lat > 0).astype(float)[None, None], (nt, members, n)),
        "tp": np.abs(rng.standard_normal((nt, members, n))) * 1e-3,
        "cos_latitude": np.broadcast_to(np.cos(np.radians(lat))[None, None], (nt, members, n)),
        **(extra or {}),
    }
    meta = {"lsm": {"constant_in_time": True}, "cos_latitude": {"constant_in_time": True}, **(units or {})}
    dates = np.datetime64("2020-01-01T00") + np.arange(nt) * np.timedelta64(6, "h")
    return write_anemoi_store(tmp_path / "s.zarr", fields, dates, lat, lon, metadata=meta, tendencies=tendencies), fields


def test_names_map_to_weatherbench2():
    assert anemoi_variable("z_500") == ("geopotential", 500)
    assert anemoi_variable("z") == ("geopotential_at_surface", None)
    assert anemoi_variable("2t") == ("2m_temperature", None)
    assert anemoi_variable("10u") == ("10m_u_component_of_wind", None)
    assert anemoi_variable("msl") == ("mean_sea_level_pressure", None)
    assert anemoi_variable("lsm") == ("land_sea_mask", None)
    assert anemoi_variable("q_850") == ("specific_humidity", 850)
    assert anemoi_variable("tp", frequency="6h") == ("total_precipitation_6hr", None)
    assert anemoi_variable("tp", frequency="24h") == ("total_precipitation_24hr", None)
    assert anemoi_variable("tp", frequency="1h") == ("total_precipitation", None)
    assert anemoi_variable("cos_latitude") == ("cos_latitude", None)
    assert anemoi_variable("t_137", {"mars": {"param": "t", "levtype": "ml", "levelist": 137}}) == ("t_137", None)


def test_regular_grid_any_cell_order_and_ensemble(tmp_path):
    la, lo = np.meshgrid(np.linspace(80, -80, 9), np.arange(0, 360, 30.0) - 180, indexing="ij")
    perm = np.random.default_rng(1).permutation(la.size)  # cells in no particular order
    path, fields = _synthetic(tmp_path, la.ravel()[perm], lo.ravel()[perm], members=2)
    ds = open_dataset(path)
    assert ds["temperature"].dims == ("time", "member", "level", "latitude", "longitude")
    assert ds.sizes["member"] == 2 and list(ds.level.values) == [500, 850]
    assert np.all(np.diff(ds.latitude.values) > 0) and ds.longitude.values.min() == 0.0
    assert ds["land_sea_mask"].dims == ("latitude", "longitude")  # constant_in_time -> static
    assert ds["cos_latitude"].dims == ("latitude", "longitude")
    assert "total_precipitation_6hr" in ds
    # value of one cell
    k = int(np.flatnonzero((la.ravel()[perm] == 40.0) & (lo.ravel()[perm] == -150.0))[0])
    got = ds["temperature"].sel(level=850, latitude=40.0, longitude=210.0).isel(time=1, member=1)
    assert float(got) == pytest.approx(float(np.float32(fields["t_850"][1, 1, k])))


def test_healpix_and_unstructured_grids(tmp_path):
    from atmos.grids import HealpixGrid

    g = HealpixGrid(2, "ring")
    lat, lon = g.centers()
    path, fields = _synthetic(tmp_path, lat, np.where(lon > 180, lon - 360, lon))
    ds = open_dataset(path)
    assert ds.attrs["anemoi_grid"] == "healpix" and grid_of(ds) == g
    assert ds.cell_ids.attrs == {"grid_name": "healpix", "level": 1, "indexing_scheme": "ring"}
    np.testing.assert_array_equal(ds["2m_temperature"].values, fields["2t"][:, 0].astype(np.float32))

    rng = np.random.default_rng(2)
    ulat, ulon = rng.uniform(-90, 90, 50), rng.uniform(0, 360, 50)
    (tmp_path / "u").mkdir()
    path2, _ = _synthetic(tmp_path / "u", ulat, ulon)
    un = open_dataset(path2)
    assert un.attrs["anemoi_grid"] == "unstructured" and un["temperature"].dims == ("time", "level", "cell")
    np.testing.assert_array_equal(un.latitude.values, ulat)


def test_stats_tendencies_and_unit_conversion(tmp_path):
    la, lo = np.meshgrid(np.linspace(60, -60, 5), np.arange(0, 360, 60.0), indexing="ij")
    extra = {"msl": 1013 + np.random.default_rng(3).standard_normal((4, 1, la.size))}
    units = {"msl": {"units": "hPa"}, "2t": {"units": "K"}}
    path, fields = _synthetic(tmp_path, la.ravel(), lo.ravel(), nt=4, tendencies=True, extra=extra, units=units)
    st = anemoi_stats(path)
    ds = open_dataset(path)
    msl = ds["mean_sea_level_pressure"]
    assert msl.attrs["units"] == "Pa"
    np.testing.assert_allclose(float(msl.mean()), float(st["mean_sea_level_pressure"].sel(statistic="mean")), rtol=1e-6)
    np.testing.assert_allclose(float(msl.std()), float(st["mean_sea_level_pressure"].sel(statistic="std")), rtol=1e-4)
    d = np.diff(fields["t_850"].astype(np.float32).astype(np.float64), axis=0)
    np.testing.assert_allclose(float(st["temperature"].sel(statistic="residual_std", level=850)), d.std(), rtol=1e-9)
    assert st.attrs["residual"].endswith("statistics_tendencies_6h")


def test_detection_and_errors(tmp_path):
    path, _ = _synthetic(tmp_path, np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 20.0]))
    assert is_anemoi_store(path) and is_anemoi_store(str(path))
    plain = tmp_path / "plain.zarr"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_zarr(plain, consolidated=False)
    assert not is_anemoi_store(plain) and not is_anemoi_store(tmp_path / "none") and not is_anemoi_store("s3://b/x")
    with pytest.raises(SourceError, match="not an anemoi-datasets store"):
        open_anemoi(plain)
    with pytest.raises(SourceError, match="does not exist"):
        anemoi_stats(tmp_path / "none.zarr")
    import zarr

    g = zarr.open_group(str(path), mode="a")
    g.attrs["variables"] = list(g.attrs["variables"])[:-1]
    with pytest.raises(DataError, match="lists 5 variables"):
        open_anemoi(path)
