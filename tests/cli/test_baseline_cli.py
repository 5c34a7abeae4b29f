"""``atmos baseline pattern-scaling fit|predict`` and ``atmos evaluate --climatebench`` on synthetic cmip6-ng files."""

from __future__ import annotations

import json

import cftime
import numpy as np
import pytest
import xarray as xr

import atmos.cli.main as cli_main
from atmos.baselines import PatternScaling
from atmos.io.cmip6 import open_scenarios

LAT = np.linspace(-81.0, 81.0, 10)  # 18-degree cells, no poles
LON = np.arange(0.0, 360.0, 30.0)
SCEN_YEARS = {"historical": np.arange(1850, 2015), "ssp585": np.arange(2015, 2101), "ssp126": np.arange(2015, 2101)}


def _gmst(scen: str, years: np.ndarray) -> np.ndarray:
    if scen == "historical":
        return np.linspace(0.0, 1.0, years.size) + 0.1 * np.sin(years / 2.0)
    end = 4.5 if scen == "ssp585" else 1.8
    return np.linspace(1.0, end, years.size) + 0.05 * np.cos(years)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """tas = a + b * T with an area-weighted mean slope of 1, so the GMST is T (plus member noise)."""
    root = tmp_path_factory.mktemp("cmip6")
    rng = np.random.default_rng(0)
    a = rng.normal(285.0, 8.0, (LAT.size, LON.size))
    b = rng.normal(1.0, 0.4, (LAT.size, LON.size))
    members = {"historical": ["r1i1p1f1", "r2i1p1f1"], "ssp585": ["r1i1p1f1"], "ssp126": ["r1i1p1f1"]}
    for scen, years in SCEN_YEARS.items():
        t = _gmst(scen, years)
        eps = 0.2 * rng.normal(size=(years.size, LAT.size, LON.size)) if len(members[scen]) > 1 else 0.0
        for k, mem in enumerate(members[scen]):
            noise = eps if k == 0 else -eps  # cancels in the ensemble mean
            ds = xr.Dataset(
                {"tas": (("time", "lat", "lon"), a + b * t[:, None, None] + noise, {"units": "K"})},
                coords={
                    "time": [cftime.DatetimeNoLeap(int(y), 7, 2, 12) for y in years],
                    "lat": LAT,
                    "lon": LON,
                    "height": 2.0,
                },
            )
            ds = ds.isel(lat=slice(None, None, -1))  # stored north-to-south: the loader sorts
            ds.to_netcdf(root / f"tas_ann_TOY-ESM_{scen}_{mem}_g025.nc")
    return root, a, b


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(
        cli_main, "COMMANDS", {"baseline": "atmos.cli.baseline", "evaluate": "atmos.cli.evaluate"}
    )
    return cli_main.main


def test_loader_canonicalises(data_dir):
    root, _, _ = data_dir
    data = open_scenarios([root], ["historical", "ssp126"])
    assert list(data) == ["historical", "ssp126"]
    h = data["historical"]
    assert h["tas"].dims == ("member", "time", "latitude", "longitude")
    assert h.sizes["member"] == 2 and h["time"].values[0] == 1850 and h["time"].dtype.kind == "i"
    assert np.all(np.diff(h["latitude"].values) > 0)
    assert "height" not in h.coords


def test_fit_predict_evaluate_round_trip(tmp_path, data_dir, cli, capsys):
    root, _, b = data_dir
    coeffs, pred = tmp_path / "coeffs.nc", tmp_path / "pred.nc"
    rc = cli(["baseline", "pattern-scaling", "fit", str(root), "--train", "historical", "ssp585",
              "--var", "tas", "-o", str(coeffs)])
    assert rc == 0
    ps = PatternScaling.load(coeffs)
    assert ps.coefficients.attrs["training_scenarios"] == "historical,ssp585"
    # members cancel exactly in the ensemble mean, so the planted pattern comes back
    np.testing.assert_allclose(ps.coefficients["tas"].sel(degree=1).values, b / np.average(
        b, weights=np.broadcast_to(np.cos(np.deg2rad(LAT))[:, None], b.shape)), rtol=1e-9)
    rc = cli(["baseline", "pattern-scaling", "predict", "--coeffs", str(coeffs), "--gmst-from", str(root),
              "--scenario", "ssp126", "-o", str(pred)])
    assert rc == 0
    out = xr.open_dataset(pred)
    assert out["tas"].dims == ("scenario", "time", "latitude", "longitude")
    truth = open_scenarios([root], ["ssp126"])["ssp126"]["tas"].isel(member=0)
    np.testing.assert_allclose(out["tas"].sel(scenario="ssp126").values, truth.values, atol=1e-8)
    scores = tmp_path / "scores.json"
    rc = cli(["evaluate", "--climatebench", "--pred", str(pred), "--truth", str(root), "--scenario", "ssp126",
              "--baseline", "historical:1850-1900", "-o", str(scores)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ClimateBench NRMSE" in text and "tas" in text
    s = json.loads(scores.read_text())["scores"]["tas"]
    assert s["spatial"] < 1e-8 and s["global"] < 1e-8  # noise-free scenario, exact pattern


def test_stage1_driver_table(tmp_path, data_dir, cli):
    root, a, b = data_dir
    table = tmp_path / "driver.csv"
    lines = ["year,historical,ssp585,ssp126"]
    for y in range(1850, 2101):
        row = [str(y)]
        for scen in ("historical", "ssp585", "ssp126"):
            yrs = SCEN_YEARS[scen]
            row.append(repr(100.0 * float(_gmst(scen, yrs)[y - yrs[0]]) + 7.0) if yrs[0] <= y <= yrs[-1] else "")
        lines.append(",".join(row))
    table.write_text("\n".join(lines) + "\n")
    coeffs = tmp_path / "c.nc"
    assert cli(["baseline", "pattern-scaling", "fit", str(root), "--train", "historical", "ssp585",
                "--driver", str(table), "-o", str(coeffs)]) == 0
    ps = PatternScaling.load(coeffs)
    w = np.broadcast_to(np.cos(np.deg2rad(LAT))[:, None], a.shape)  # = cell areas on this grid
    a_m, b_m = np.average(a, weights=w), np.average(b, weights=w)
    # gmst = a_m + b_m * T and driver = 100 T + 7, exactly
    np.testing.assert_allclose(ps.stage1.coef_, [a_m - 0.07 * b_m, 0.01 * b_m], rtol=1e-9)
    pred = tmp_path / "p.nc"
    assert cli(["baseline", "pattern-scaling", "predict", "--coeffs", str(coeffs), "--driver", str(table),
                "--scenario", "ssp126", "-o", str(pred)]) == 0
    assert xr.open_dataset(pred)["tas"].sizes["time"] == 86


def test_errors_exit_2_with_a_message(tmp_path, data_dir, cli, capsys):
    root, _, _ = data_dir
    rc = cli(["baseline", "pattern-scaling", "fit", str(root), "--train", "ssp370", "-o", str(tmp_path / "c.nc")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "ssp370" in err and "found ['historical', 'ssp126', 'ssp585']" in err
    rc = cli(["baseline", "pattern-scaling", "fit", str(tmp_path / "nope"), "-o", str(tmp_path / "c.nc")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = cli(["evaluate", "--pred", str(tmp_path / "x.nc"), "--truth", str(root)])
    assert rc == 2 and "--climatebench" in capsys.readouterr().err
