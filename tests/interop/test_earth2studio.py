"""atmos.interop.earth2studio: atmos checkpoints inside earth2studio's own workflows.

The reference is always :func:`atmos.rollout.rollout` on the same initial conditions: the
adapter must give the same trajectory (it makes the same Forecaster calls).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("earth2studio")
torch = pytest.importorskip("torch")

INIT = "2020-01-01T00"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sample_ds():
    from atmos.rollout.sample import sample_data_path

    return xr.open_dataset(sample_data_path()).load()


@pytest.fixture(scope="module")
def sample_model(sample_ds):
    from atmos.interop.earth2studio import AtmosPrognostic

    # statics up to INIT: the TOA calibration is fitted on the same 8 times as `atmos rollout` at INIT
    return AtmosPrognostic(statics=sample_ds.sel(time=slice(None, INIT)))


@pytest.fixture(scope="module")
def e2s_source(sample_ds, sample_model, tmp_path_factory):
    """A local earth2studio data source (DataArrayFile) over the embedded sample initial conditions."""
    from earth2studio.data import DataArrayFile

    from atmos.interop.earth2studio import to_earth2studio

    path = tmp_path_factory.mktemp("e2s") / "ic.nc"
    names = [c.name for c in sample_model.channels] + ["land_sea_mask", "geopotential_at_surface"]
    to_earth2studio(sample_ds, names).to_netcdf(path)
    return DataArrayFile(str(path))


def _ref_field(ref: xr.Dataset, channel, lead: int | None = None) -> np.ndarray:
    """The reference forecast's channel as ``[lead, lat(desc), lon]`` (earth2studio's lat order)."""
    da = ref[channel.variable]
    if channel.level is not None:
        da = da.sel(level=channel.level)
    da = da.isel(time=0).transpose("prediction_timedelta", "latitude", "longitude")
    return da.values[:, ::-1]


def _max_abs_diffs(model, out, ref) -> dict[str, float]:
    return {
        str(e): float(np.abs(out[str(e)].isel(time=0).values - _ref_field(ref, c)).max())
        for e, c in zip(model.variables, model.channels)
    }


def test_names_match_earth2studio_lexicon():
    from earth2studio.lexicon.base import E2STUDIO_VOCAB
    from earth2studio.lexicon.wb2 import WB2Lexicon

    from atmos.interop.earth2studio import E2S_LEVELLED, E2S_NAMES, atmos_channel, e2s_name

    for var, e2s in E2S_NAMES.items():
        assert e2s in E2STUDIO_VOCAB, e2s
        if e2s in WB2Lexicon.VOCAB:  # earth2studio's WeatherBench2 lexicon: the same WB2 name
            assert WB2Lexicon.VOCAB[e2s] == f"{var}::", (e2s, WB2Lexicon.VOCAB[e2s])
    for var, prefix in E2S_LEVELLED.items():
        assert WB2Lexicon.VOCAB[f"{prefix}500"] == f"{var}::500"
    assert e2s_name("geopotential_500") == "z500" and e2s_name("geopotential_at_surface") == "z"
    assert e2s_name("mean_sea_level_pressure") == "msl" and e2s_name("u_component_of_wind_850") == "u850"
    assert e2s_name("evaporation") == "evaporation"  # no earth2studio id: the atmos name is kept
    assert e2s_name("evaporation", {"evaporation": "e"}) == "e"
    assert (
        atmos_channel("z500").name == "geopotential_500"
        and atmos_channel("z").name == "geopotential_at_surface"
    )
    assert (
        atmos_channel("t2m").name == "2m_temperature"
        and atmos_channel("r850").variable == "relative_humidity"
    )


def test_protocol_and_coords(sample_model):
    from earth2studio.models.px import PrognosticModel

    m = sample_model
    assert isinstance(m, PrognosticModel)
    ic = m.input_coords()
    assert list(ic) == ["batch", "time", "lead_time", "variable", "lat", "lon"]
    assert ic["lat"][0] > 0 > ic["lat"][-1] and np.all(np.diff(ic["lat"]) < 0)  # 90 -> -90
    assert ic["lead_time"].tolist() == [np.timedelta64(0, "ns")]
    assert "z500" in ic["variable"] and "t2m" in ic["variable"] and "lsm" not in ic["variable"]
    oc = m.output_coords(ic)
    assert oc["lead_time"][0] == np.timedelta64(6, "h")
    # the forcings are computed inside the adapter (TOA fitted like atmos rollout, time encodings)
    assert set(m.forcing_notes) == {"toa_incident_solar_radiation", "cos_day_of_year", "sin_day_of_year"}
    assert "fitted" in m.forcing_notes["toa_incident_solar_radiation"]
    # earth2studio's workflows call .to(device): the same device keeps the adapter as it is
    assert m.to("cpu") is m and m.to(torch.device("cpu")) is m


def test_deterministic_workflow_matches_atmos_rollout(sample_model, sample_ds, e2s_source):
    """earth2studio.run.deterministic + a local data source + an in-memory IO == atmos.rollout.rollout."""
    import earth2studio.run
    from earth2studio.io import XarrayBackend

    from atmos.rollout import rollout

    nsteps = 4
    io = earth2studio.run.deterministic(
        [np.datetime64(INIT)],
        nsteps,
        sample_model,
        e2s_source,
        XarrayBackend(),
        device=torch.device("cpu"),
        verbose=False,
    )
    out = io.root
    assert out["z500"].dims == ("time", "lead_time", "lat", "lon") and out.sizes["lead_time"] == nsteps + 1
    ref = rollout(None, sample_ds, INIT, steps=nsteps)
    diffs = _max_abs_diffs(sample_model, out, ref)
    # measured: 0.0 for every variable (the same Forecaster calls, float32 throughout)
    for e, c in zip(sample_model.variables, sample_model.channels):
        np.testing.assert_allclose(
            out[str(e)].isel(time=0).values, _ref_field(ref, c), rtol=1e-6, atol=0, err_msg=e
        )
    assert max(diffs.values()) <= 1e-6 * 2e5, diffs


def test_call_is_one_step_of_the_iterator_and_batches(sample_model, e2s_source):
    from earth2studio.data import fetch_data

    m = sample_model
    ic = m.input_coords()
    x, coords = fetch_data(e2s_source, np.array([np.datetime64(INIT)]), ic["variable"], ic["lead_time"])
    assert list(coords) == ["time", "lead_time", "variable", "lat", "lon"]
    it = m.create_iterator(x, coords)
    x0, _ = next(it)
    torch.testing.assert_close(x0, x)  # the initial state first
    x1, c1 = next(it)
    y, cy = m(x, coords)
    assert y.shape == x.shape and cy["lead_time"].tolist() == c1["lead_time"].tolist()
    torch.testing.assert_close(y, x1, rtol=0, atol=0)
    # leading batch dims: two identical members give the single-member step twice
    xb = torch.stack([x, x])
    cb = coords.copy()
    cb["ensemble"] = np.arange(2)
    cb.move_to_end("ensemble", last=False)
    yb, cyb = m(xb, cb)
    assert next(iter(cyb)) == "ensemble" and yb.shape == (2, *y.shape)
    torch.testing.assert_close(yb[1], y, rtol=0, atol=0)


def test_dataset_from_source_round_trip(sample_model, sample_ds, e2s_source):
    """earth2studio source -> canonical atmos data (ascending lat, levels, statics) -> atmos rollout."""
    from atmos.interop.earth2studio import dataset_from_source
    from atmos.rollout import rollout

    t = np.datetime64(INIT)
    ds = dataset_from_source(e2s_source, t, sample_model.forecaster)
    assert ds["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert ds["land_sea_mask"].dims == ("latitude", "longitude")
    assert ds.level.values.tolist() == [250, 500, 850] and np.all(np.diff(ds.latitude.values) > 0)
    want = sample_ds.sel(time=[t])
    for v in ("geopotential", "temperature", "2m_temperature", "mean_sea_level_pressure"):
        np.testing.assert_array_equal(ds[v].values, want[v].values.astype(np.float32), err_msg=v)
    np.testing.assert_array_equal(ds["land_sea_mask"].values, sample_ds["land_sea_mask"].values)
    # e2s ids work as well
    ds2 = dataset_from_source(e2s_source, [t], ["z500", "t2m", "lsm"])
    np.testing.assert_array_equal(
        ds2["geopotential"].sel(level=500).values, want["geopotential"].sel(level=500).values
    )
    # the converted data (no TOA: atmos' default astronomy) roll out like the adapter with that default
    from atmos.interop.earth2studio import AtmosPrognostic

    out = rollout(None, ds, INIT, steps=1)
    m = AtmosPrognostic(statics=ds)
    assert "default" in m.forcing_notes["toa_incident_solar_radiation"]
    x = torch.from_numpy(_to_e2s_tensor(ds, m))
    y, _ = m(x, _coords(m, t))
    c = m.channels[1]
    np.testing.assert_array_equal(y[0, 0, 1].numpy(), _ref_field(out, c)[1])


class _AscendingSource:
    """A small custom earth2studio DataSource over a canonical dataset: latitude ascending, as some
    sources return it (``dataset_from_source`` must put it back in atmos order either way)."""

    def __init__(self, ds, bad_dims: bool = False):
        self.ds, self.bad_dims = ds, bad_dims

    def __call__(self, time, variable):
        from atmos.interop.earth2studio import atmos_channel, to_earth2studio

        names = [atmos_channel(v).name for v in variable]
        da = to_earth2studio(self.ds.sel(time=np.asarray(time, "datetime64[ns]")), names)
        da = da.assign_coords(variable=list(variable)).isel(lat=slice(None, None, -1))
        return da.rename(lat="y") if self.bad_dims else da


def test_custom_source_with_ascending_latitude(sample_model, sample_ds, e2s_source):
    from atmos.errors import DataError
    from atmos.interop.earth2studio import dataset_from_source

    src = _AscendingSource(sample_ds)
    t = [np.datetime64("2019-12-31T18"), np.datetime64(INIT)]
    a = dataset_from_source(src, t, sample_model.forecaster)
    b = dataset_from_source(e2s_source, t, sample_model.forecaster)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    with pytest.raises(DataError, match=r"returned dims \['time', 'variable', 'y', 'lon'\]"):
        dataset_from_source(_AscendingSource(sample_ds, bad_dims=True), t, ["t2m"])


def _to_e2s_tensor(ds, m) -> np.ndarray:
    from atmos.interop.earth2studio import to_earth2studio

    da = to_earth2studio(ds, [c.name for c in m.channels])
    return da.values[:, None].astype(np.float32)  # [time, lead_time, variable, lat, lon]


def _coords(m, t):
    c = m.input_coords()
    del c["batch"]
    c["time"] = np.array([t], dtype="datetime64[ns]")
    return c


def test_clear_errors(sample_model, sample_ds, e2s_source, monkeypatch):
    import copy

    from atmos.errors import ConfigError, DataError
    from atmos.interop import earth2studio as ie

    m = sample_model
    t = np.datetime64(INIT)
    x = torch.zeros(1, 1, len(m.variables), len(m.lat), len(m.lon))
    bad = _coords(m, t)
    bad["lat"] = bad["lat"][::-1].copy()  # ascending: earth2studio wants 90 -> -90
    with pytest.raises(DataError, match="coordinate 'lat'.*map_coords"):
        m(x, bad)
    bad = _coords(m, t)
    bad["variable"] = bad["variable"][::-1].copy()
    with pytest.raises(DataError, match="coordinate 'variable'"):
        m(x, bad)
    with pytest.raises(DataError, match="does not match the coordinates"):
        m(x[..., :-1], _coords(m, t))
    with pytest.raises(DataError, match=r"has no \[.z500., .q500.\]"):
        ie.dataset_from_source(e2s_source, t, ["z500", "q500"])
    # a model that is not the sample needs its statics
    fc = copy.copy(m.forecaster)
    fc.info = {**fc.info, "atmos_checkpoint": "/elsewhere/run"}
    with pytest.raises(ConfigError, match=r"land_sea_mask.*statics="):
        ie.AtmosPrognostic(fc)
    with pytest.raises(DataError, match="lacks"):
        ie.AtmosPrognostic(fc, statics=sample_ds[["land_sea_mask"]])
    with pytest.raises(ConfigError, match="ToaCalibration"):
        ie.AtmosPrognostic(fc, statics=sample_ds, toa_calibration=1.0)
    # earth2studio missing: the message names the extra
    monkeypatch.setitem(sys.modules, "earth2studio", None)
    with pytest.raises(ImportError, match=r'pip install "atmos\[earth2studio\]"'):
        ie.AtmosPrognostic()


def test_import_atmos_interop_imports_neither_torch_nor_earth2studio():
    code = (
        "import sys, atmos, atmos.interop, atmos.interop.earth2studio as e;"
        "assert 'torch' not in sys.modules, 'torch';"
        "assert 'earth2studio' not in sys.modules, 'earth2studio';"
        "assert e.e2s_name('temperature_850') == 't850'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


# -- HEALPix: a recurrent U-Net-GRU (history 2) trained on HEALPix faces, seen by earth2studio on lat-lon --


@pytest.fixture(scope="module")
def healpix_run(tmp_path_factory):
    from atmos.rollout.forcings import toa_incident_solar_radiation
    from atmos.testing import mock_era5
    from atmos.train import fit

    root = tmp_path_factory.mktemp("hpx")
    ds = mock_era5(
        "2020-01-01",
        periods=24,
        nlat=8,
        nlon=16,
        levels=(500, 850),
        variables=["geopotential", "temperature", "2m_temperature", "toa_incident_solar_radiation"],
        canonical=True,
        seed=3,
    ).load()
    lat, lon = np.meshgrid(ds.latitude.values, ds.longitude.values, indexing="ij")
    toa = toa_incident_solar_radiation(ds.time.values, lat, lon, kind="instantaneous").astype(np.float32)
    ds["toa_incident_solar_radiation"] = (
        ("time", "latitude", "longitude"),
        toa,
        ds["toa_incident_solar_radiation"].attrs,
    )
    store = root / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(store, mode="w")
    cfg = {
        "model": {
            "name": "unet_gru",
            "params": {"channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1},
        },
        "data": {
            "source": str(store),
            "variables": ["geopotential", "temperature", "2m_temperature"],
            "levels": [500, 850],
            "forcings": ["toa_incident_solar_radiation", "cos_time_of_day"],
            "statics": ["land_sea_mask"],
            "batch_size": 2,
            "grid": "healpix",
            "nside": 4,
            "history": 2,
        },
        "validation": {"source": None},
        "schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 1},
        "output": {"dir": str(root / "runs"), "name": "run", "progress": False},
        "device": "cpu",
    }
    return fit(cfg).run_dir, ds


def test_healpix_model_in_deterministic_workflow(healpix_run, tmp_path):
    import earth2studio.run
    from earth2studio.data import DataArrayFile
    from earth2studio.io import XarrayBackend

    from atmos.grids import HealpixGrid
    from atmos.interop.earth2studio import AtmosPrognostic, to_earth2studio
    from atmos.rollout import rollout

    run, ds = healpix_run
    init = "2020-01-03T00"
    model = AtmosPrognostic(run, statics=ds.sel(time=slice(None, init)))
    assert isinstance(model.forecaster.model_grid, HealpixGrid) and model.forecaster.model.recurrent
    ic = model.input_coords()
    assert ic["lead_time"].tolist() == [
        np.timedelta64(-6, "h").astype("timedelta64[ns]"),
        np.timedelta64(0, "ns"),
    ]
    assert (len(ic["lat"]), len(ic["lon"])) == (8, 16) and ic["lat"][0] > ic["lat"][-1]
    to_earth2studio(ds, [c.name for c in model.channels]).to_netcdf(tmp_path / "ic.nc")
    nsteps = 5  # past the 24 h reset of the recurrent state
    io = earth2studio.run.deterministic(
        [np.datetime64(init)],
        nsteps,
        model,
        DataArrayFile(str(tmp_path / "ic.nc")),
        XarrayBackend(),
        device=torch.device("cpu"),
        verbose=False,
    )
    ref = rollout(run, ds, init, steps=nsteps)
    diffs = _max_abs_diffs(model, io.root, ref)
    # measured: 0.0 for every variable
    for e, c in zip(model.variables, model.channels):
        np.testing.assert_allclose(
            io.root[str(e)].isel(time=0).values, _ref_field(ref, c), rtol=1e-6, atol=1e-6, err_msg=e
        )
    assert set(diffs) == {"z500", "z850", "t500", "t850", "t2m"}
