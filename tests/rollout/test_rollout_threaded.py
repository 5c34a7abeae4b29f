"""Issue 13: leads written on a writer thread (BackgroundWriter), whole chunk files written without
zarr's machinery (ChunkFile), forcings from a per-run table (ForcingTable), channels read in one graph.
Every mechanism gives the bytes / values of the path it replaces."""

from __future__ import annotations

import filecmp
import os
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

from atmos.rollout import ForecastWriter, read_progress, rollout
from atmos.rollout.background import BackgroundWriter
from atmos.rollout.chunkfiles import ChunkFile
from atmos.rollout.context import ForcingTable, build_context, forcings_at
from atmos.rollout.plan import plan_rollout
from atmos.rollout.run import run_plan

INIT = "2020-01-02"


def _chunk_files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs if f"{os.sep}c{os.sep}" in
        os.path.join(d, f)
    )


def _same_store(a, b):
    fa, fb = _chunk_files(a), _chunk_files(b)
    assert fa == fb and fa
    diff = [f for f in fa if not filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)]
    assert not diff, diff
    da, db = xr.open_zarr(str(a)), xr.open_zarr(str(b))
    for v in da.variables:
        assert np.array_equal(da[v].values, db[v].values, equal_nan=True), v


@pytest.mark.parametrize("members", [None, 3])
def test_threaded_writes_equal_synchronous_writes(vit_fc, mock_ds, tmp_path, members):
    kw = {"members": members, "perturb": 0.05 if members else 0.0}
    plan = plan_rollout(vit_fc, mock_ds, ["2020-01-02", "2020-01-03"], 1.5, **kw)
    run_plan(plan, out=tmp_path / "thr.zarr")
    run_plan(plan, out=tmp_path / "sync.zarr", threaded_writes=False)
    _same_store(tmp_path / "thr.zarr", tmp_path / "sync.zarr")
    assert read_progress(tmp_path / "thr.zarr")["atmos_status"] == "complete"
    mem = rollout(vit_fc, mock_ds, ["2020-01-02", "2020-01-03"], 1.5, **kw)
    got = xr.open_zarr(str(tmp_path / "thr.zarr"))
    for v in mem.data_vars:
        assert np.array_equal(mem[v].values, got[v].values, equal_nan=True)


def test_chunk_files_are_the_bytes_zarr_writes(vit_fc, mock_ds, tmp_path):
    """ChunkFile against zarr's own Array.__setitem__ on the same store layout."""
    plan = plan_rollout(vit_fc, mock_ds, INIT, 1, members=2, perturb=0.05)
    run_plan(plan, out=tmp_path / "a.zarr", threaded_writes=False)
    import shutil

    import zarr

    shutil.copytree(tmp_path / "a.zarr", tmp_path / "b.zarr")
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")
    n = 0
    for name, arr in g.arrays():
        if ChunkFile.of(arr) is None:
            continue
        for k in range(arr.shape[1]):
            arr[0, k] = xr.open_zarr(str(tmp_path / "a.zarr"))[name].values[0, k]  # zarr's writing path
            n += 1
    assert n >= 2 * 5
    _same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


def test_chunk_file_only_for_what_it_writes_byte_identically(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    ok = g.create_array("ok", shape=(1, 2, 4, 8), chunks=(1, 1, 4, 8), dtype="float32",
                        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))
    part = g.create_array("part", shape=(1, 2, 4, 8), chunks=(1, 1, 2, 8), dtype="float32",
                          compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))
    other = g.create_array("other", shape=(1, 2, 4, 8), chunks=(1, 1, 4, 8), dtype="float32",
                           compressors=zarr.codecs.ZstdCodec())
    assert ChunkFile.of(ok) is not None
    assert ChunkFile.of(part) is None and ChunkFile.of(other) is None
    with pytest.raises(ValueError, match="does not fill a chunk"):
        ChunkFile.of(ok).write((0, 0), np.zeros((4, 7), np.float32))
    ChunkFile.of(ok).write((0, 1), np.arange(32, dtype=np.float32).reshape(4, 8))
    assert np.array_equal(zarr.open_array(str(tmp_path / "s.zarr" / "ok"))[0, 1], np.arange(32).reshape(4, 8))
    assert not [f for f in _chunk_files(tmp_path / "s.zarr") if f.endswith(".partial")]


def test_a_failing_writer_thread_surfaces_and_the_store_is_not_complete(vit_fc, mock_ds, tmp_path, monkeypatch):
    real = ForecastWriter.write
    caller = threading.get_ident()

    def write(self, i, k, values):
        assert threading.get_ident() != caller  # the writes run on the writer thread
        if k == 3:
            raise OSError(28, "No space left on device")
        real(self, i, k, values)

    monkeypatch.setattr(ForecastWriter, "write", write)
    out = tmp_path / "f.zarr"
    with pytest.raises(OSError, match="No space left") as info:
        rollout(vit_fc, mock_ds, INIT, 2, out=out)
    assert any("writer thread" in n and "lead 3" in n for n in getattr(info.value, "__notes__", []))
    attrs = read_progress(out)
    assert attrs["atmos_status"].startswith("failed") and attrs["atmos_completed_leads"] == [3]
    monkeypatch.setattr(ForecastWriter, "write", real)
    rollout(vit_fc, mock_ds, INIT, 2, out=out)  # a failed store is replaced by a plain rerun
    assert read_progress(out)["atmos_status"] == "complete"


def test_background_writer_queue_is_bounded_and_errors_are_raised_once_written(tmp_path):
    class Slow:
        path = tmp_path / "x.zarr"

        def __init__(self):
            self.completed, self.active, self.held, self.peak = [0], 0, 0, 0

        def write(self, i, k, values):
            time.sleep(0.01)
            if k == 5:
                raise RuntimeError("disk gone")
            self.completed[i] = k + 1

    w = Slow()
    bw = BackgroundWriter(w, depth=2)
    live = []
    for k in range(5):
        bw.write(0, k, {"x": np.zeros(1)})
        live.append(k + 1 - w.completed[0])
    assert max(live) <= 3  # depth queued + one being written: memory stays flat
    bw.flush()
    assert w.completed == [5] and bw.completed == [5]
    bw.write(0, 5, {})
    with pytest.raises(RuntimeError, match="disk gone"):
        bw.flush()
    with pytest.raises(RuntimeError, match="disk gone"):
        bw.write(0, 6, {})
    bw.stop()
    assert w.completed == [5]


def test_callback_sees_the_lead_written(vit_fc, mock_ds, tmp_path):
    out = tmp_path / "f.zarr"
    seen = []

    def cb(i, k):
        seen.append((k, (out / "2m_temperature" / f"c.0.{k}.0.0").is_file()))

    rollout(vit_fc, mock_ds, INIT, 1, out=out, callback=cb)
    assert seen == [(k, True) for k in range(5)]


def test_forcing_table_equals_a_call_per_window(vit_fc, mock_ds):
    ctx = build_context(vit_fc, mock_ds, INIT, "auto")
    reads = {"n": 0}
    base = ctx.forcing_fns[0]

    def from_data(t):  # a data-read forcing: called per window, never ahead of the run
        reads["n"] += 1
        return base(t)

    from_data.reads_data = True
    for fns in (list(ctx.forcing_fns), [from_data, *ctx.forcing_fns[1:]]):
        ctx.forcing_fns = fns
        t, dt, h = np.datetime64("2020-01-02T00", "ns"), vit_fc.step.to_timedelta64(), vit_fc.history
        for _ in range(300):
            got = forcings_at(ctx, t, h, vit_fc.step, 2, vit_fc.device)
            times = np.array([t + (k + 1) * dt for k in range(-h, 1)], dtype="datetime64[ns]")
            want = np.ascontiguousarray(np.stack([fn(times) for fn in fns], axis=1), dtype=np.float32)
            assert torch.equal(got, torch.from_numpy(want).unsqueeze(0).expand(2, *want.shape))
            t = t + dt
    assert reads["n"] == 2 * 300  # once per window in forcings_at, once in the check above
    assert isinstance(ctx.forcing_table, ForcingTable) and len(ctx.forcing_table.values) <= 256
