"""``atmos evaluate FORECAST``, ``atmos climatology`` and ``atmos plot`` on small synthetic files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import atmos.cli.main as cli_main
from atmos.baselines import persistence_forecast
from atmos.evaluation import read_scorecard
from atmos.testing import mock_era5

VARS = ["geopotential", "temperature", "2m_temperature"]
# zarr 3 warns that consolidated metadata is not in its spec when xarray writes it
pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    truth = mock_era5("2020-01-01", periods=4 * 8, nlat=8, nlon=16, variables=VARS, canonical=True, statics=False).load()
    truth.to_netcdf(root / "truth.nc")
    train = mock_era5("2019-01-01", periods=1460, nlat=8, nlon=16, variables=VARS, canonical=True, statics=False,
                      time_chunk=365).load()
    train.to_netcdf(root / "train.nc")
    inits = truth.time.values[: 4 * 6 : 4]  # daily, 6 inits; the last one runs past the truth at 3 days
    fc = persistence_forecast(truth, inits, pd.timedelta_range("0h", "3D", freq="6h"))
    fc = (fc + 0.1 * (fc - fc.mean("longitude"))).astype(np.float32)  # a slightly wrong model
    fc.to_zarr(root / "toy.zarr")
    return root


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", {
        "evaluate": "atmos.cli.evaluate", "climatology": "atmos.cli.climatology", "plot": "atmos.cli.plot"})
    return cli_main.main


def test_climatology_evaluate_plot(files, cli, capsys, tmp_path):
    clim = tmp_path / "clim.nc"
    assert cli(["climatology", str(files / "train.nc"), "-o", str(clim), "--variables", "z500", "t2m",
                "--window", "31"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "1460 time steps" in out
    c = xr.open_dataset(clim)
    assert sorted(c.data_vars) == ["2m_temperature", "geopotential"]  # z500 -> geopotential, all levels
    assert c["geopotential"].dims == ("hour", "dayofyear", "level", "latitude", "longitude")
    assert c.attrs["window_days"] == 31

    scores, plots = tmp_path / "scores.csv", tmp_path / "plots"
    rc = cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--climatology", str(clim),
              "--variables", "z500", "t2m", "--regions", "global,tropics", "-o", str(scores)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "note: 1 of 6 init times" in out  # the last one runs past the end of the truth
    assert "RMSE  region=global  model=toy" in out and "ACC  region=tropics  model=climatology" in out
    sc = read_scorecard(scores)
    assert list(sc["model"].values) == ["toy", "persistence", "climatology"]
    assert list(sc["variable"].values) == ["z500", "t2m"]
    assert list(sc["region"].values) == ["global", "tropics"]
    assert float(sc["score"].sel(model="persistence", metric="rmse", prediction_timedelta="0h").max()) == 0.0
    assert (sc["score"].sel(model="climatology", metric="acc") == 0).all()

    rc = cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--climatology", str(clim),
              "--variables", "t2m", "--plots", str(plots)])
    assert rc == 0 and "wrote 5 plot(s)" in capsys.readouterr().out
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["acc_global.png", "bias_global.png", "maps_t2m.png", "rmse_global.png", "spectra.png"]
    assert all((plots / n).read_bytes()[:8] == PNG for n in names)

    out_dir = tmp_path / "p2"
    assert cli(["plot", str(scores), "-o", str(out_dir), "--metrics", "rmse", "--regions", "tropics"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["rmse_tropics.png"]
    assert cli(["plot", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--variables", "t2m",
                "--leads", "1D", "-o", str(out_dir)]) == 0
    assert (out_dir / "maps_toy_t2m.png").read_bytes()[:8] == PNG and (out_dir / "spectra.png").exists()


def test_evaluate_with_climatology_source_and_json(files, cli, capsys, tmp_path):
    out = tmp_path / "s.json"
    rc = cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--climatology-source",
              str(files / "train.nc"), "--climatology-window", "15", "--variables", "t850", "--metrics", "rmse,acc",
              "--baselines", "climatology", "--name", "mymodel", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ACC  region=global  model=mymodel" in text and "persistence" not in text
    rows = pd.read_json(out)
    assert set(rows["model"]) == {"mymodel", "climatology"} and set(rows["metric"]) == {"rmse", "acc"}


def test_evaluate_without_climatology_skips_acc(files, cli, capsys):
    assert cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--variables", "t2m"]) == 0
    out = capsys.readouterr().out
    assert "ACC and the climatology baseline are skipped" in out and "BIAS  region=global  model=persistence" in out


def test_cli_errors(files, cli, capsys, tmp_path):
    assert cli(["evaluate", "--truth", str(files / "truth.nc")]) == 2
    assert "--climatebench" in capsys.readouterr().err
    assert cli(["evaluate", str(files / "toy.zarr"), "--climatebench", "--truth", str(files / "truth.nc")]) == 2
    assert "--pred" in capsys.readouterr().err
    assert cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--climatology", "a.nc",
                "--climatology-source", "b"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli(["evaluate", str(files / "toy.zarr"), "--truth", str(files / "truth.nc"), "--baselines",
                "climatology"]) == 2
    assert "needs a climatology" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path / "none.zarr"), "--truth", str(files / "truth.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["plot", str(files / "toy.zarr"), "-o", str(tmp_path)]) == 2
    assert "--truth" in capsys.readouterr().err
    assert cli(["climatology", str(files / "truth.nc"), "-o", str(tmp_path / "c.nc")]) == 2
    assert "allow_gaps" in capsys.readouterr().err or "window" in capsys.readouterr().err


def test_evaluate_against_and_ci(files, cli, capsys, tmp_path):
    """--against B prints A - B with its interval and marks significance; --ci adds intervals to every score."""
    toy = str(files / "toy.zarr")
    out = tmp_path / "cmp.csv"
    rc = cli(["evaluate", toy, "--truth", str(files / "truth.nc"), "--against", "persistence", "--variables", "z500",
              "--n-boot", "200", "--block-length", "2", "-o", str(out), "--plots", str(tmp_path / "p")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "A = toy, B = persistence" in text and "block 2 init times" in text and "significant at" in text
    df = pd.read_csv(out)
    assert {"difference", "lower", "upper", "significant", "p_value"} <= set(df.columns)
    assert (tmp_path / "p" / "difference_rmse_global.png").read_bytes()[:8] == PNG
    rc = cli(["evaluate", toy, "--truth", str(files / "truth.nc"), "--against", toy, "--variables", "t2m",
              "--n-boot", "100"])
    assert rc == 0
    assert "(significant at 0 of" in capsys.readouterr().out  # a forecast against itself
    rc = cli(["evaluate", toy, "--truth", str(files / "truth.nc"), "--variables", "t2m", "--ci", "--n-boot", "100",
              "--baselines", "none", "-o", str(tmp_path / "s.csv")])
    assert rc == 0
    assert "block bootstrap" in capsys.readouterr().out
    sc = read_scorecard(tmp_path / "s.csv")
    assert bool((sc["score_lower"] <= sc["score"] + 1e-12).all()) and bool((sc["score"] <= sc["score_upper"] + 1e-12).all())
