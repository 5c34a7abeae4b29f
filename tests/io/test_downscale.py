"""Conservative coarsening, interpolation baselines, downscale() and the downscaling training/CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from atmos.errors import DataError, GridError
from atmos.grids.latlon import LatLonGrid, coarse_grid
from atmos.io.coords import area_weights, global_mean
from atmos.io.downscale import channel_array, coarsen_conservative, interpolate_baseline
from atmos.models.registry import build
from atmos.rollout.downscale import downscale, load_downscaler

FINE = LatLonGrid.equiangular(32, 64)


def _ds(grid: LatLonGrid = FINE, nt: int = 3, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    coords = {
        "time": pd.date_range("2020-01-01", periods=nt, freq="6h"),
        "level": [500, 850],
        "latitude": grid.lat,
        "longitude": grid.lon,
    }
    shape2 = (nt, grid.nlat, grid.nlon)
    return xr.Dataset(
        {
            "2m_temperature": (
                ("time", "latitude", "longitude"),
                280 + 10 * rng.standard_normal(shape2),
                {"units": "K"},
            ),
            "geopotential": (
                ("time", "level", "latitude", "longitude"),
                5e4 + 1e3 * rng.standard_normal((nt, 2, *grid.shape)),
            ),
            "geopotential_at_surface": (("latitude", "longitude"), 1e3 * rng.random(grid.shape)),
            "land_sea_mask": (("latitude", "longitude"), (rng.random(grid.shape) > 0.6).astype(float)),
        },
        coords=coords,
    )


@pytest.mark.parametrize(
    "grid", [FINE, LatLonGrid.equiangular(32, 64, poles=True), LatLonGrid.gaussian(32, 64)]
)
@pytest.mark.parametrize("factor", [2, 4])
def test_coarsening_conserves_the_area_weighted_mean(grid, factor):
    ds = _ds(grid)
    c = coarsen_conservative(ds, factor)
    assert c["geopotential"].shape == (3, 2, grid.nlat // factor, grid.nlon // factor)
    for name in ds.data_vars:
        m0, m1 = global_mean(ds[name]).values, global_mean(c[name]).values
        np.testing.assert_allclose(m1, m0, rtol=1e-6)


def test_coarsening_a_constant_gives_the_constant_and_block_means():
    ds = _ds()
    ds["const"] = xr.full_like(ds["2m_temperature"], 271.25)
    c = coarsen_conservative(ds, 4)
    np.testing.assert_allclose(c["const"].values, 271.25, rtol=1e-12)
    # on the nested 64x32 grid each coarse value is the area-weighted mean of its 4x4 block
    w = FINE.area_weights()
    x = ds["2m_temperature"].values[0]
    blocks = (x * w).reshape(8, 4, 16, 4).sum((1, 3)) / w.reshape(8, 4, 16, 4).sum((1, 3))
    np.testing.assert_allclose(c["2m_temperature"].values[0], blocks, rtol=1e-12)
    assert c.attrs["atmos_coarsen_factor"] == 4
    with pytest.raises(GridError, match="divide"):
        coarsen_conservative(ds, 3)


def _smooth(grid: LatLonGrid) -> xr.DataArray:
    la, lo = np.meshgrid(np.deg2rad(grid.lat), np.deg2rad(grid.lon), indexing="ij")
    x, y, z = np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)
    f = x + 0.5 * y * z + 0.3 * z**2 + 0.2 * x * y  # low-degree spherical harmonics: smooth across the poles
    return xr.DataArray(
        f, dims=("latitude", "longitude"), coords={"latitude": grid.lat, "longitude": grid.lon}
    )


def test_baselines_grid_constants_and_bicubic_beats_bilinear_on_a_smooth_field():
    cg = coarse_grid(FINE, 4)
    coarse, truth = _smooth(cg), _smooth(FINE)
    w = FINE.area_weights()
    rmse = {}
    for method in ("bilinear", "bicubic"):
        out = interpolate_baseline(coarse, FINE, method)
        assert out.dims == ("latitude", "longitude") and out.shape == FINE.shape
        np.testing.assert_array_equal(out["latitude"].values, FINE.lat)
        np.testing.assert_array_equal(out["longitude"].values, FINE.lon)
        rmse[method] = float(np.sqrt((w * (out.values - truth.values) ** 2).sum()))
        const = interpolate_baseline(xr.full_like(coarse, 7.0), (32, 64), method)
        np.testing.assert_allclose(const.values, 7.0, rtol=1e-12)
    # measured: bilinear 1.9e-2, bicubic 1.4e-4 (the cubic spline is far more accurate on smooth fields)
    assert rmse["bicubic"] < 0.05 * rmse["bilinear"]
    assert rmse["bilinear"] < 0.05


def test_baselines_are_periodic_in_longitude():
    cg = coarse_grid(FINE, 4)
    rng = np.random.default_rng(3)
    c = xr.DataArray(
        rng.standard_normal(cg.shape),
        dims=("latitude", "longitude"),
        coords={"latitude": cg.lat, "longitude": cg.lon},
    )
    for method in ("bilinear", "bicubic"):
        a = interpolate_baseline(c, FINE, method).values
        b = interpolate_baseline(c.copy(data=np.roll(c.values, 1, axis=-1)), FINE, method).values
        np.testing.assert_allclose(b, np.roll(a, 4, axis=-1), atol=1e-12)


def test_baseline_of_a_dataset_keeps_other_dims_and_rejects_unknown_methods():
    c = coarsen_conservative(_ds(), 4)
    out = interpolate_baseline(c, FINE, "bicubic")
    assert out["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert out["geopotential"].shape == (3, 2, 32, 64)
    np.testing.assert_array_equal(out["level"].values, [500, 850])
    with pytest.raises(DataError, match="bilinear"):
        interpolate_baseline(c, FINE, "lanczos")


def _meta(ds: xr.Dataset, channels, statics=()):
    norm = {}
    for name in [*channels, *statics]:
        da = channel_array(ds, name)
        var, level = (
            (name, None)
            if name in ds.data_vars
            else (name.rpartition("_")[0], float(name.rpartition("_")[2]))
        )
        norm[name] = {"variable": var, "level": level, "mean": float(da.mean()), "std": float(da.std())}
    return {"task": "downscale", "normalization": norm}


def test_downscale_output_grid_and_conservation_in_physical_units(tmp_path):
    ds = _ds()
    channels = ["2m_temperature", "geopotential_500", "geopotential_850"]
    torch.manual_seed(0)
    head = build("downscale", channels=channels, nlat=32, nlon=64, factor=4, hidden=8, fine_hidden=8).double()
    with torch.no_grad():
        head.out.weight.normal_(0, 0.1)
    meta = _meta(ds, channels)
    coarse = coarsen_conservative(ds, 4)
    out = downscale(coarse, head, meta)
    assert out["2m_temperature"].dims == ("time", "latitude", "longitude")
    assert out["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert out["geopotential"].shape == (3, 2, 32, 64)
    np.testing.assert_array_equal(out["latitude"].values, FINE.lat)
    np.testing.assert_array_equal(out["longitude"].values, FINE.lon)
    np.testing.assert_array_equal(out["level"].values, [500.0, 850.0])
    np.testing.assert_array_equal(out["time"].values, ds["time"].values)
    # conserve=True: coarsening the downscaled field gives back the input (float32 output)
    back = coarsen_conservative(out.astype("float64"), 4)
    for name in ("2m_temperature", "geopotential"):
        np.testing.assert_allclose(back[name].values, coarse[name].values, rtol=1e-5)
    with pytest.raises(DataError, match="coarse grid"):
        downscale(ds, head, meta)  # fine data passed where coarse data is expected


def test_save_load_and_cli_round_trip(tmp_path):
    from atmos.cli import downscale as cli
    from atmos.train.checkpoint import save_checkpoint

    ds = _ds()
    channels, statics = ["2m_temperature", "geopotential_500"], ["land_sea_mask"]
    head = build(
        "downscale", channels=channels, statics=statics, nlat=32, nlon=64, factor=4, hidden=8, fine_hidden=8
    )
    meta = _meta(ds, channels, statics)
    with torch.no_grad():
        head.out.weight.normal_(0, 0.1)
        head.static_fields.copy_(torch.as_tensor(ds["land_sea_mask"].values[None], dtype=torch.float32))
    cfg = dataclasses.asdict(head.config)
    meta.update(model={"name": "downscale", "params": cfg}, factor=4)
    save_checkpoint(tmp_path / "run", "final", head.state_dict(), meta)
    loaded, _ = load_downscaler(tmp_path / "run")
    torch.testing.assert_close(loaded.static_fields, head.static_fields)
    expected = downscale(coarsen_conservative(ds, 4), head.eval(), meta)
    got = downscale(coarsen_conservative(ds, 4), tmp_path / "run")
    xr.testing.assert_allclose(got, expected)

    src = tmp_path / "fine.nc"
    ds.to_netcdf(src)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out = tmp_path / "out.nc"
    args = parser.parse_args(
        ["downscale", str(src), "--model", str(tmp_path / "run"), "-o", str(out), "--coarsen"]
    )
    assert args.func(args) == 0
    with xr.open_dataset(out) as res:
        xr.testing.assert_allclose(res.load(), expected.astype(res["2m_temperature"].dtype), rtol=1e-5)

    # fine data without --coarsen: the message names the CLI flag, not only the Python function
    args = parser.parse_args(["downscale", str(src), "--model", str(tmp_path / "run"), "-o", str(out)])
    with pytest.raises(DataError, match="atmos downscale INPUT --coarsen"):
        args.func(args)

    bad = json.loads((tmp_path / "run" / "checkpoints" / "final" / "checkpoint.json").read_text())
    bad["task"] = "forecast"
    (tmp_path / "run" / "checkpoints" / "final" / "checkpoint.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="not a downscaling model"):
        load_downscaler(tmp_path / "run")


def test_fit_downscaler_writes_a_usable_run(tmp_path):
    from atmos.train.downscale import DownscaleTrainConfig, fit_downscaler

    src = tmp_path / "train.nc"
    _ds(nt=8).to_netcdf(src)
    cfg = DownscaleTrainConfig(
        data=str(src),
        channels=["2m_temperature", "geopotential_500"],
        statics=["geopotential_at_surface", "land_sea_mask"],
        model={"hidden": 4, "fine_hidden": 4, "coarse_blocks": 0, "fine_blocks": 0},
        epochs=2,
        batch_size=4,
        output_dir=str(tmp_path),
        name="run",
        val_data=str(src),
    )
    run = fit_downscaler(cfg)
    assert (run / "DONE").is_file()
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,train_loss")
    meta = json.loads((run / "checkpoints" / "final" / "checkpoint.json").read_text())
    assert meta["task"] == "downscale" and meta["training"]["global_step"] == 4
    assert meta["normalization"]["geopotential_500"]["level"] == 500.0
    out = downscale(coarsen_conservative(_ds(nt=2, seed=5), 4), run)
    assert out["geopotential"].shape == (2, 1, 32, 64)
    assert np.isfinite(out["2m_temperature"].values).all()
    # the statics saved with the weights are the normalized training statics
    model, _ = load_downscaler(run)
    lsm = _ds(nt=8)["land_sea_mask"].values
    n = meta["normalization"]["land_sea_mask"]
    np.testing.assert_allclose(
        model.static_fields[1].numpy(), (lsm - n["mean"]) / n["std"], rtol=1e-5, atol=1e-6
    )


def test_channel_array_errors_name_the_fix():
    ds = _ds()
    assert channel_array(ds, "geopotential_850").dims == ("time", "latitude", "longitude")
    with pytest.raises(DataError, match="level 300"):
        channel_array(ds, "geopotential_300")
    with pytest.raises(DataError, match="not found"):
        channel_array(ds, "temperature_500")
    assert float(area_weights(ds).sum()) == pytest.approx(1.0)
