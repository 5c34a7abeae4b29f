"""``decoder.latent_cache``: the frozen backbone's latents computed once and reused every epoch.

Invariants: the cache changes nothing but the cost. Decoder weights, training losses and
validation RMSE are *bitwise* those of the uncached run when every training batch holds
at least two windows (the cache holds exactly the latents the uncached run recomputes:
same eval-mode backbone under ``no_grad``, the same sample order from the same generator,
and on CPU the ViT's latent of a window does not depend on the other windows of a batch
of two or more). A batch of *one* window takes another matmul path in the ViT (about 1e-7
apart), so with a last batch of one per epoch the runs agree to float tolerance only.
The backbone encodes each window once; a disk cache is reused by
a rerun and rebuilt when the backbone changes; an interrupted build leaves no cache behind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from atmos.errors import ConfigError
from atmos.models.checkpoint import load_checkpoint
from atmos.train import fit, load_config
from atmos.train.latent_cache import choose_mode
from tests.train.conftest import NEW, make_config

FAST = {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2}
EPOCHS = 3
N_TRAIN, N_VAL = 30, 4  # 2020-01-01..08T12 (31 steps, history 1): 15 batches of 2; validation.samples
EVEN = ["2020-01-01", "2020-01-08T12"]
TWO = {"epochs": 2, "warmup_steps": 1, "max_steps_per_epoch": None}


def _cfg(store: Path, out: Path, backbone: Path, name: str, cache: str, task: str = "decoder", **sections) -> dict:
    sections.setdefault("schedule", {"epochs": EPOCHS, "warmup_steps": 2, "max_steps_per_epoch": None})
    sections.setdefault("data", {"period": EVEN})
    return make_config(
        store, out, task=task, backbone=str(backbone), optimizer={"lr": 1e-2, "ema_decay": 0.9},
        decoder={"variables": list(NEW), "hidden": [16], "transforms": {"total_precipitation_6hr": "log1p"},
                 "latent_cache": cache},
        output={"dir": str(out), "name": name, "progress": False, "overwrite": True}, **sections,
    )


class _Counter:
    """Patches ``load_model`` so that the loaded backbone counts the windows it encodes."""

    def __init__(self, mp: pytest.MonkeyPatch, perturb: bool = False, fail_at: int | None = None) -> None:
        import atmos.models.checkpoint as ckpt_mod

        self.samples = 0
        self.calls = 0
        real = ckpt_mod.load_model

        def load(path, *args, **kwargs):
            model, meta = real(path, *args, **kwargs)
            if perturb:
                with torch.no_grad():
                    next(model.parameters()).view(-1)[0] += 1e-3
            inner = model.forward_latent

            def forward_latent(inputs, *a, **k):
                self.calls += 1
                if fail_at is not None and self.calls >= fail_at:
                    raise KeyboardInterrupt("interrupted")
                self.samples += int(inputs.shape[0])
                return inner(inputs, *a, **k)

            model.forward_latent = forward_latent
            return model, meta

        mp.setattr(ckpt_mod, "load_model", load)


def _run(cfg: dict, **kw) -> tuple[object, _Counter]:
    with pytest.MonkeyPatch.context() as mp:
        counter = _Counter(mp, **kw)
        res = fit(cfg)
    return res, counter


def _state(res) -> dict[str, torch.Tensor]:
    return load_checkpoint(res.checkpoint).model_state


def _training(res) -> dict:
    return json.loads((Path(res.checkpoint) / "checkpoint.json").read_text())["training"]


@pytest.fixture(scope="module")
def backbone(decoder_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache-backbone")
    res = fit(make_config(decoder_store, out, schedule=dict(FAST), validation={"source": None},
                          output={"dir": str(out), "name": "vit", "progress": False}))
    return res.run_dir


@pytest.fixture(scope="module")
def runs(decoder_store, backbone, tmp_path_factory) -> dict:
    """The same decoder run without a cache, with a memory cache and with a disk cache."""
    out = tmp_path_factory.mktemp("cache-runs")
    return {mode: _run(_cfg(decoder_store, out, backbone, mode, mode)) for mode in ("none", "memory", "disk")}


def test_cached_runs_train_bitwise_the_same_decoder(runs):
    ref, _ = runs["none"]
    for mode in ("memory", "disk"):
        res, _ = runs[mode]
        assert _training(res)["latent_cache"]["mode"] == mode
        a, b = _state(ref), _state(res)
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a), mode
        assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]
        assert res.validation == ref.validation  # RMSE of the new variables and the backbone's own, exactly
        assert res.global_step == ref.global_step == EPOCHS * 15


def test_a_last_batch_of_one_agrees_to_float_tolerance(decoder_store, backbone, tmp_path):
    """31 windows in batches of 2: the uncached run encodes one window per epoch alone (another kernel path)."""
    odd = {"period": ["2020-01-01", "2020-01-08T18"]}
    ref, _ = _run(_cfg(decoder_store, tmp_path, backbone, "none", "none", data=odd))
    res, c = _run(_cfg(decoder_store, tmp_path, backbone, "memory", "memory", data=odd))
    assert c.samples == 31 + N_VAL
    a, b = _state(ref), _state(res)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
    for v, r in ref.validation["rmse"].items():
        assert abs(res.validation["rmse"][v] - r) <= 1e-4 * abs(r), v
    assert res.validation["prognostic_rmse"] == ref.validation["prognostic_rmse"]  # the frozen backbone's own


def test_cache_encodes_every_window_once(runs):
    _, none = runs["none"]
    assert none.samples == EPOCHS * N_TRAIN + EPOCHS * N_VAL  # every step and every validation
    for mode in ("memory", "disk"):
        _, c = runs[mode]
        assert c.samples == N_TRAIN + N_VAL, mode


def test_disk_cache_is_reused_by_a_rerun_and_rebuilt_for_another_backbone(runs, decoder_store, backbone):
    first, _ = runs["disk"]
    root = first.run_dir / "latent_cache"
    folders = sorted(p.name for p in root.iterdir())
    assert [f.split("-")[0] for f in folders] == ["train", "val"]
    res, c = _run(_cfg(decoder_store, first.run_dir.parent, backbone, "disk", "disk"))
    assert c.samples == 0 and _training(res)["latent_cache"]["reused"] is True
    a, b = _state(first), _state(res)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # another backbone (one weight changed): a new key, rebuilt, the old cache removed
    res2, c2 = _run(_cfg(decoder_store, first.run_dir.parent, backbone, "disk", "disk"), perturb=True)
    assert c2.samples == N_TRAIN + N_VAL and _training(res2)["latent_cache"]["reused"] is False
    after = sorted(p.name for p in root.iterdir())
    assert len(after) == 2 and not set(after) & set(folders)


def test_interrupted_or_damaged_disk_cache_is_never_used(decoder_store, backbone, tmp_path):
    cfg = _cfg(decoder_store, tmp_path, backbone, "d", "disk", schedule=TWO)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, fail_at=3)
    root = tmp_path / "d" / "latent_cache"
    assert list(root.iterdir()) == []  # the half-written temporary folder is gone, no cache in place
    (root / ".tmp-train-killed").mkdir()  # what a killed process leaves
    (root / ".tmp-train-killed" / "latents.npy").write_bytes(b"junk")
    res, c = _run(cfg)
    assert c.samples == N_TRAIN + N_VAL and not (root / ".tmp-train-killed").exists()
    npy = next(root.glob("train-*")) / "latents.npy"
    npy.write_bytes(npy.read_bytes()[:-100])  # truncated: rebuilt, not read
    res2, c2 = _run(cfg)
    assert c2.samples == N_TRAIN
    a, b = _state(res), _state(res2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_uses_memory_for_a_small_cache_and_logs_it(decoder_store, backbone, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="atmos.train"):
        res, c = _run(_cfg(decoder_store, tmp_path, backbone, "auto", "auto", schedule=TWO))
    info = _training(res)["latent_cache"]
    assert info["mode"] == "memory" and "auto" in info["reason"] and info["mb"] > 0
    assert c.samples == N_TRAIN + N_VAL
    assert any("latent cache memory" in r.getMessage() for r in caplog.records)
    # one pass with few steps: nothing to reuse, no cache
    res1, _ = _run(_cfg(decoder_store, tmp_path, backbone, "once", "auto", schedule=dict(FAST)))
    assert _training(res1)["latent_cache"]["mode"] == "none"


def test_finetune_never_caches(decoder_store, backbone, tmp_path):
    res, c = _run(_cfg(decoder_store, tmp_path, backbone, "ft", "auto", task="finetune",
                       schedule={"epochs": 2, "warmup_steps": 1, "max_steps_per_epoch": 2}))
    info = _training(res)["latent_cache"]
    assert info["mode"] == "none" and "finetune" in info["reason"]
    assert c.samples == 2 * 2 * 2 + 2 * N_VAL
    with pytest.raises(ConfigError, match="finetune") as err:
        load_config({"task": "finetune", "backbone": "x", "decoder": {"latent_cache": "memory"}})
    assert "'none'" in str(err.value)


def test_latent_cache_values_are_checked():
    with pytest.raises(ConfigError, match="decoder.latent_cache") as err:
        load_config({"task": "decoder", "backbone": "x", "decoder": {"latent_cache": "ram"}})
    assert all(m in str(err.value) for m in ("'auto'", "'memory'", "'disk'", "'none'", "'ram'"))
    with pytest.raises(ConfigError, match="latent_cache_max_mb"):
        load_config({"task": "decoder", "backbone": "x", "decoder": {"latent_cache_max_mb": -1}})


def test_choose_mode():
    kw = {"task": "decoder", "stochastic": False, "size_mb": 100.0, "max_mb": 200.0, "reused": True}
    assert choose_mode("auto", **kw)[0] == "memory"
    assert choose_mode("auto", **{**kw, "size_mb": 300.0})[0] == "disk"
    assert choose_mode("auto", **{**kw, "reused": False})[0] == "none"
    assert choose_mode("disk", **kw)[0] == "disk"
    assert choose_mode("none", **kw)[0] == "none"
    assert choose_mode("auto", **{**kw, "stochastic": True})[0] == "none"
    with pytest.raises(ConfigError, match="stochastic"):
        choose_mode("memory", **{**kw, "stochastic": True})
    with pytest.raises(ConfigError, match="finetune"):
        choose_mode("disk", **{**kw, "task": "finetune"})
