"""Every command against a table of bad inputs: exit 2, no traceback, a message that names the
problem, and nothing left behind (issue 12's bad-input table, kept as a regression test).

Each case runs in a fresh working folder holding ``afile`` (a plain file), ``bad.yaml`` (not
YAML), ``badmodel.yaml`` (an unknown model) and, as ``{fc}``, a finished 2-day forecast store.
``OUT`` names what the case would write; it must not exist afterwards.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from atmos.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CFG = str(REPO / "configs" / "vit_speedy.yaml")

# (argv, OUT or None, a fragment the message must contain)
CASES = [
    # rollout: times and lengths
    ("rollout --init 2020-13-01 --days 1 --out x.zarr", "x.zarr", "cannot read the initial time"),
    ("rollout --init 2020-01-01T03 --days 1 --out x.zarr", "x.zarr", "not on its time grid"),
    ("rollout --init 2030-01-01 --days 1 --out x.zarr", "x.zarr", "inside the data's period"),
    ("rollout --init 2020-01-01 --days -1 --out x.zarr", "x.zarr", "days must be >= 0"),
    ("rollout --init 2020-01-01 --days 1 --step 5h --out x.zarr", "x.zarr", "must be a multiple of the model's step"),
    ("rollout --init 2020-01-01 --days 1 --step banana --out x.zarr", "x.zarr", "time interval such as '6h'"),
    # rollout: ensembles
    ("rollout --init 2020-01-01 --days 1 --members 0 --out x.zarr", "x.zarr", "members must be an integer >= 1"),
    ("rollout --init 2020-01-01 --days 1 --members -3 --out x.zarr", "x.zarr", "members must be an integer >= 1"),
    ("rollout --init 2020-01-01 --days 1 --members 2 --out x.zarr", "x.zarr", "identical forecasts"),
    ("rollout --init 2020-01-01 --days 1 --perturb 0.1 --out x.zarr", "x.zarr", "needs an ensemble"),
    ("rollout --init 2020-01-01 --days 1 --members 2 --perturb -1 --out x.zarr", "x.zarr", "must be a number >= 0"),
    ("rollout --init 2020-01-01 --days 1 --members 2 --perturb 0.1 --perturb-length-scale -5 --out x.zarr",
     "x.zarr", "length scale must be > 0"),
    # rollout: model, data, device, decoder
    ("rollout --model nosuchdir --data speedy-world-val --init 2020-01-01 --days 1 --out x.zarr", "x.zarr",
     "does not exist"),
    ("rollout --model afile --data speedy-world-val --init 2020-01-01 --days 1 --out x.zarr", "x.zarr",
     "no atmos checkpoint under 'afile'"),
    ("rollout --data nosuch-entry --init 2020-01-01 --days 1 --out x.zarr", "x.zarr", "neither a catalog entry"),
    ("rollout --data afile --init 2020-01-01 --days 1 --out x.zarr", "x.zarr", "readable zarr store or netCDF"),
    ("rollout --init 2020-01-01 --days 1 --device tpu --out x.zarr", "x.zarr", "unknown device 'tpu'"),
    ("rollout --init 2020-01-01 --days 1 --decoder nosuch --out x.zarr", "x.zarr", "decoder 'nosuch' does not exist"),
    # rollout: output stores
    ("rollout --init 2020-01-01 --days 1 --out afile/x.zarr", None, "is a file, not a folder"),
    ("rollout --init 2020-01-01 --days 2 --out {fc}", None, "already exists"),
    ("rollout --init 2020-01-02 --days 2 --out {fc} --resume", None, "different settings"),
    ("rollout --init 2020-01-01 --days 4 --out {fc} --resume", None, "n_lead"),
    # evaluate
    ("evaluate nosuch.zarr --truth speedy-world-val", None, "does not exist"),
    ("evaluate {fc}", None, "--truth is required"),
    ("evaluate {fc} --truth nosuch-entry", None, "neither a catalog entry"),
    ("evaluate {fc} --truth speedy-world-val --metrics nosuch", None, "unknown metric 'nosuch'"),
    ("evaluate {fc} --truth speedy-world-val --regions mars", None, "unknown region 'mars'"),
    ("evaluate {fc} --truth speedy-world-val --variables nosuch", None, "is not in the forecast"),
    ("evaluate {fc} --truth speedy-world-val --baselines nosuch", None, "unknown baseline 'nosuch'"),
    ("evaluate {fc} --stability nosuch-entry", None, "neither a catalog entry"),
    ("evaluate afile --truth speedy-world-val", None, "cannot read forecast 'afile'"),
    ("evaluate {fc} --truth speedy-world-val -o afile/scores.csv", None, "is a file, not a folder"),
    # climatology and stats
    ("climatology nosuch -o c.nc", "c.nc", "neither a catalog entry"),
    ("climatology speedy-world-val -o c.nc --time 1990-01-01 1990-02-01", "c.nc", "no time step"),
    ("climatology speedy-world-val -o c.nc --window -3", "c.nc", "expected an odd number of days"),
    ("climatology speedy-world-val -o c.nc --variables nosuch", "c.nc", "are not in the dataset"),
    ("climatology speedy-world-val -o afile/c.nc", None, "is a file, not a folder"),
    ("stats nosuch -o s.nc", "s.nc", "neither a catalog entry"),
    ("stats speedy-world-val -o s.txt", "s.txt", "cannot tell the format"),
    ("stats speedy-world-val -o s.nc --variables nosuch", "s.nc", "are not in the dataset"),
    ("stats speedy-world-val -o s.nc --dims nosuch", "s.nc", "cannot reduce over dimension 'nosuch'"),
    ("stats speedy-world-val -o s.nc --time 1990-01-01 1990-02-01", "s.nc", "selects no time step"),
    ("stats speedy-world-val -o afile/s.nc", None, "is a file, not a folder"),
    # other commands
    ("downscale speedy-world-val --model nosuch -o d.zarr", "d.zarr", "does not exist"),
    ("info nosuch", None, "neither a catalog entry"),
    ("info ''", None, "empty string"),
    ("catalog show nosuch", None, "no catalog entry named 'nosuch'"),
    ("catalog nosuchaction", None, "invalid choice"),
    ("train nosuch.yaml", None, "does not exist"),
    ("train bad.yaml", None, ""),
    ("train badmodel.yaml", None, "unknown model name 'nosuch'"),
    (f"train {CFG} optimizer.lr=fast", None, "optimizer.lr must be a number"),
    (f"train {CFG} nosuchkey=1", None, "unknown key 'nosuchkey'"),
    (f"train {CFG} output.dir=afile/runs", None, "is a file, not a folder"),
    (f"train {CFG} data.source=nosuch-entry output.dir=runs", "runs", "neither a catalog entry"),
    (f"train {CFG} --resume nosuchckpt", None, "no atmos checkpoint there"),
    (f"slurm {CFG} --nodes 0 --gpus-per-node 4 --time 01:00:00 --output job.sh", "job.sh", "--nodes must be >= 1"),
    (f"slurm {CFG} --nodes 1 --gpus-per-node 4 --time banana --output job.sh", "job.sh", "--time must be HH:MM:SS"),
    ("validate --model nosuch", None, "no committed scorecard"),
    ("validate --rtol -1", None, "rtol must be a number between 0 and 1"),
    ("plot {fc} -o plots --variables nosuch", "plots", "--truth"),
    ("baseline nosuch", None, "invalid choice"),
    ("nosuchcommand", None, "invalid choice"),
]


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("fc") / "fc.zarr"
    assert main(["rollout", "--init", "2020-01-01", "--days", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def _call(argv):
    try:
        return main(argv)
    except SystemExit as err:  # argparse errors
        return err.code


@pytest.mark.requires_speedy
@pytest.mark.parametrize("cmd, out, fragment", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_is_a_clear_error_and_leaves_nothing(cmd, out, fragment, finished_store, tmp_path,
                                                       monkeypatch, capsys):
    if os.environ.get("ATMOS_DATA"):  # CI passes a relative path; the case runs elsewhere
        monkeypatch.setenv("ATMOS_DATA", str(Path(os.environ["ATMOS_DATA"]).resolve()))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a store")
    (tmp_path / "bad.yaml").write_text("model: [\n")
    (tmp_path / "badmodel.yaml").write_text("model:\n  name: nosuch\n")
    before = finished_store.stat().st_mtime_ns, sorted(p.name for p in finished_store.iterdir())
    assert len(CASES) >= 40
    code = _call(shlex.split(cmd.format(fc=finished_store)))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert fragment in err, err
    if out is not None:
        assert not (tmp_path / out).exists()
        assert not (tmp_path / f"{out}.lock").exists()
    # the finished store that some cases point at is left as it was
    assert (finished_store.stat().st_mtime_ns, sorted(p.name for p in finished_store.iterdir())) == before
