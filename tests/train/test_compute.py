"""The ``compute:`` switches of the forecast trainer: each changes the cost, not what is learned.

Gradient accumulation equals the larger batch; activation checkpointing and channels-last give
the same outputs and gradients; bf16/fp16 autocast run on CPU (with a loss scaler for fp16) and
keep spectral norm in fp32; a compiled step trains the same weights; FSDP2 with 2 gloo
processes equals one process and resumes bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atmos.errors import ConfigError
from atmos.models import apply_spectral_norm
from atmos.models.unet_gru import UNetGRU
from atmos.models.vit import ViT
from atmos.train import fit, load_config
from atmos.train.checkpoint import find_checkpoint, load_training_state
from atmos.train.compute import keep_spectral_norm_fp32, resolve_precision
from tests.models.test_unet_gru import batch as unet_batch
from tests.models.test_unet_gru import small_config as unet_config
from tests.models.test_vit import batch as vit_batch
from tests.models.test_vit import small_config as vit_config
from tests.train.conftest import torchrun_train

SHORT = {"schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 3}, "validation": {"samples": 4, "steps": 1}}


def _weights(res) -> dict[str, torch.Tensor]:
    return load_file(str(res.checkpoint / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# -- gradient accumulation ---------------------------------------------------------------------


def test_grad_accumulation_equals_the_larger_batch(tiny_config):
    data = tiny_config()["data"]
    acc = fit(tiny_config(**SHORT, data={**data, "batch_size": 2}, compute={"grad_accumulation": 2},
                          multistep={"steps": 2, "maximum": 2, "gradient": "truncated:1"}, output={"name": "acc"}))
    big = fit(tiny_config(**SHORT, data={**data, "batch_size": 4},
                          multistep={"steps": 2, "maximum": 2, "gradient": "truncated:1"}, output={"name": "big"}))
    small = fit(tiny_config(**SHORT, data={**data, "batch_size": 2},
                            multistep={"steps": 2, "maximum": 2, "gradient": "truncated:1"}, output={"name": "small"}))
    a, b, c = _weights(acc), _weights(big), _weights(small)
    assert _max_diff(a, b) < 2e-5
    assert _max_diff(a, c) > 1e-3  # negative control: half the windows per step end elsewhere
    assert acc.global_step == big.global_step == 3
    assert acc.history[0]["train_loss"] == pytest.approx(big.history[0]["train_loss"], rel=1e-4)


def test_grad_accumulation_larger_than_the_data_is_a_clear_error(tiny_config):
    with pytest.raises(ConfigError, match="grad_accumulation"):
        fit(tiny_config(**SHORT, compute={"grad_accumulation": 1000}, output={"name": "too-many"}))


# -- activation checkpointing and channels-last --------------------------------------------------


def _vit() -> ViT:
    torch.manual_seed(0)
    return ViT(vit_config())


def _unet() -> UNetGRU:
    torch.manual_seed(0)
    return UNetGRU(unet_config())


def _out_and_grads(model: torch.nn.Module, inputs: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out, _ = model(*inputs)
    (out.square().mean()).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_numel(model: torch.nn.Module, inputs: tuple) -> int:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model(*inputs)
    out.square().mean().backward()
    return sum(sizes)


@pytest.mark.parametrize("build, make_batch", [(_vit, lambda: vit_batch(vit_config())),
                                               (_unet, lambda: unet_batch(unet_config()))], ids=["vit", "unet_gru"])
def test_activation_checkpointing_keeps_outputs_and_gradients(build, make_batch):
    x = make_batch()
    ref = build()
    out0, g0 = _out_and_grads(ref, x)
    ck = build()
    ck.activation_checkpointing = True
    out1, g1 = _out_and_grads(ck, x)
    torch.testing.assert_close(out1, out0, rtol=0, atol=0)
    assert g0.keys() == g1.keys() and len(g0) > 4
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-6, atol=1e-7, msg=k)
    # and it stores less: the tensors autograd keeps for backward during the forward pass
    assert _saved_numel(ck, x) < 0.7 * _saved_numel(ref, x)


def test_channels_last_unet_gru_matches():
    x = unet_batch(unet_config(), seed=2)
    out0, g0 = _out_and_grads(_unet(), x)
    m = _unet()
    m.channels_last = True
    m.to(memory_format=torch.channels_last)
    out1, g1 = _out_and_grads(m, x)
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)


def test_memory_switches_in_training_keep_the_weights(tiny_config):
    ref = fit(tiny_config(**SHORT, output={"name": "plain"}))
    ck = fit(tiny_config(**SHORT, compute={"activation_checkpointing": True}, output={"name": "ckpt"}))
    assert _max_diff(_weights(ref), _weights(ck)) < 1e-6


# -- precision -----------------------------------------------------------------------------------


def test_precision_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None and resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16 and resolve_precision("fp16", cpu) is torch.float16


def test_spectral_norm_stays_fp32_under_autocast():
    """The power iteration and W / sigma run with autocast off (on CUDA ``mv`` would run in
    fp16/bf16 and sigma would keep ~3 digits); on CPU autocast does not cast ``mv``, so the
    probe checks the autocast state inside the parametrization."""
    torch.manual_seed(0)
    a = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(64, 64)))
    b = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(64, 64)))
    b.load_state_dict(a.state_dict())
    assert keep_spectral_norm_fp32(b) == 1 and keep_spectral_norm_fp32(b) == 0  # idempotent
    seen = {}
    for name, m in (("plain", a), ("kept", b)):
        m[0].parametrizations.weight[0].register_forward_pre_hook(
            lambda mod, args, name=name: seen.__setitem__(name, torch.is_autocast_enabled("cpu")))
    x = torch.randn(4, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya, yb = a(x), b(x)
        assert torch.is_autocast_enabled("cpu")  # restored after the layer
    assert seen == {"plain": True, "kept": False}
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)
    assert a.state_dict().keys() == b.state_dict().keys()
    torch.testing.assert_close(b[0].parametrizations.weight[0]._u, a[0].parametrizations.weight[0]._u)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_training_on_cpu(tiny_config, precision):
    ref = fit(tiny_config(**SHORT, output={"name": "fp32"}))
    low = fit(tiny_config(**SHORT, precision=precision, output={"name": precision}))
    d = _max_diff(_weights(ref), _weights(low))
    assert 0 < d < 0.05  # autocast changed the arithmetic, not the training
    state = load_training_state(low.run_dir)
    assert bool(state["scaler"]) == (precision == "fp16")  # the loss scaler is checkpointed for fp16


# -- torch.compile -------------------------------------------------------------------------------


def test_compiled_step_trains_the_same_weights(tiny_config):
    pytest.importorskip("torch._dynamo")
    ref = fit(tiny_config(**SHORT, output={"name": "eager"}))
    comp = fit(tiny_config(**SHORT, compute={"compile": "default", "compile_backend": "aot_eager"},
                           output={"name": "compiled"}))
    a, b = _weights(ref), _weights(comp)
    assert not any("_orig_mod" in k for k in b)  # checkpoints hold the plain module's names
    assert _max_diff(a, b) < 1e-5


# -- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("override, match", [
    ("compute.parallel=zero", "compute.parallel must be one of"),
    ("compute.compile=fast", "compute.compile must be one of"),
    ("compute.grad_accumulation=0", "compute.grad_accumulation"),
])
def test_compute_config_errors(tiny_config, override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(tiny_config(), [override])


def test_fsdp_with_ema_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="ema_decay"):
        load_config(tiny_config(compute={"parallel": "fsdp"}, optimizer={"lr": 3e-3, "ema_decay": 0.9}))


# -- FSDP2 ---------------------------------------------------------------------------------------


def test_fsdp_two_gloo_processes_match_one_process_and_resume(tiny_config):
    sections = {
        "schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 3},
        "multistep": {"steps": 3, "maximum": 3, "gradient": "truncated:2"},
        "validation": {"samples": 3, "steps": 1},  # 3 windows on 2 ranks: one rank runs a padding batch
        "compute": {"parallel": "fsdp"},
    }
    data = tiny_config()["data"]
    out = {"progress": False, "checkpoint_every_steps": 1, "keep_checkpoints": 5}
    cfg = tiny_config(**sections, data={**data, "batch_size": 2}, output={**out, "name": "fsdp"})
    torchrun_train(cfg, 2)
    run = Path(cfg["output"]["dir"]) / "fsdp"
    state = load_training_state(run)
    assert state["parallel"] == "fsdp" and len(state["rng"]) == 2
    a = load_file(str(find_checkpoint(run) / "model.safetensors"))
    single = {k: v for k, v in sections.items() if k != "compute"}
    ref = fit(tiny_config(**single, data={**data, "batch_size": 4}, output={"name": "single", "progress": False}))
    b = _weights(ref)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)
    # resumed from the step-1 checkpoint, under FSDP again: the same final weights, bit for bit
    step1 = run / "checkpoints" / "step-00000001"
    assert step1.is_dir()
    cfg2 = tiny_config(**sections, data={**data, "batch_size": 2}, output={**out, "name": "fsdp-resumed"})
    torchrun_train(cfg2, 2, "--resume", str(step1))
    c = load_file(str(find_checkpoint(Path(cfg2["output"]["dir"]) / "fsdp-resumed") / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_compile_accepts_yaml_booleans(tiny_config):
    assert load_config(tiny_config(), ["compute.compile=true"]).compute.compile == "default"
    assert load_config(tiny_config(), ["compute.compile=false"]).compute.compile == "off"
