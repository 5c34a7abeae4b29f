"""One trainer core: every task honours ``optimizer``/``schedule``; the task trainers do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from atmos.errors import ConfigError
from atmos.train import fit, load_config
from tests.train.conftest import NEW, make_config

OPTIMIZER = {"lr": 2.5e-3, "weight_decay": 0.05, "betas": [0.8, 0.9], "eps": 1.0e-7, "grad_clip": 1.0e-3}
SCHEDULE = {"epochs": 1, "warmup_steps": 2, "warmup_start_factor": 0.1, "max_steps_per_epoch": 2}
TRAIN_DIR = Path(__file__).resolve().parents[2] / "atmos" / "train"


@pytest.fixture(scope="module")
def store(decoder_store) -> Path:
    return decoder_store


@pytest.fixture(scope="module")
def backbone(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("core-backbone")
    res = fit(make_config(store, out, schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2},
                          validation={"source": None}, output={"dir": str(out), "name": "vit", "progress": False}))
    return res.run_dir


def _task_config(task: str, store: Path, out: Path, backbone: Path, **optimizer) -> dict:
    common = {"optimizer": {**OPTIMIZER, **optimizer}, "schedule": dict(SCHEDULE), "validation": {"source": None},
              "output": {"dir": str(out), "name": task, "progress": False}}
    if task in ("decoder", "finetune"):
        return make_config(store, out, task=task, backbone=str(backbone),
                           decoder={"variables": list(NEW), "hidden": [8]}, **common)
    if task == "downscale":
        return make_config(store, out, task=task,
                           downscale={"channels": ["2m_temperature"], "statics": ["land_sea_mask"], "factor": 2,
                                      "model": {"hidden": 4, "fine_hidden": 4}},
                           **common)
    return make_config(store, out, **common)


@pytest.mark.parametrize("task", ["forecast", "decoder", "finetune", "downscale"])
def test_every_task_steps_with_the_configured_optimizer_and_schedule(task, store, backbone, tmp_path):
    """The optimizer at every step: lr, weight decay, betas, eps, gradient clipping and the warm-up of the config."""
    seen: list[dict] = []

    def record(optimizer, args, kwargs):
        seen.append({k: optimizer.param_groups[0][k] for k in ("lr", "initial_lr", "weight_decay", "betas", "eps")})
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen[-1]["grad_norm"] = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    handle = register_optimizer_step_pre_hook(record)
    try:
        fit(_task_config(task, store, tmp_path, backbone))
    finally:
        handle.remove()
    assert seen, f"task {task}: no optimizer step"
    for group in seen:
        assert group["initial_lr"] == pytest.approx(OPTIMIZER["lr"]), (task, group)
        assert group["weight_decay"] == pytest.approx(OPTIMIZER["weight_decay"]), (task, group)
        assert tuple(group["betas"]) == pytest.approx(tuple(OPTIMIZER["betas"])), (task, group)
        assert group["eps"] == pytest.approx(OPTIMIZER["eps"]), (task, group)
        assert group["grad_norm"] <= OPTIMIZER["grad_clip"] * (1 + 1e-4), (task, group)  # optimizer.grad_clip
    assert len(seen) == 2, (task, seen)  # schedule.epochs x schedule.max_steps_per_epoch
    # linear warm-up from lr * warmup_start_factor over schedule.warmup_steps
    assert seen[0]["lr"] == pytest.approx(OPTIMIZER["lr"] * 0.1), task
    assert seen[1]["lr"] == pytest.approx(OPTIMIZER["lr"] * (0.1 + 0.9 / 2)), task


@pytest.mark.parametrize("task", ["forecast", "decoder", "finetune", "downscale"])
def test_every_task_saves_the_ema_weights_with_optimizer_ema_decay(task, store, backbone, tmp_path):
    """With ``ema_decay`` 0.9999 the saved weights stay at the initial ones while the raw weights move."""
    from safetensors.torch import load_file

    first: list[torch.Tensor] = []
    last: list[torch.Tensor] = []

    def before(optimizer, args, kwargs):
        if not first:
            first.extend(p.detach().clone() for g in optimizer.param_groups for p in g["params"])

    def after(optimizer, args, kwargs):
        last[:] = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]

    handles = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        res = fit(_task_config(task, store, tmp_path, backbone, ema_decay=0.9999))
    finally:
        for h in handles:
            h.remove()
    assert max(float((b - a).abs().max()) for a, b in zip(first, last, strict=True)) > 1e-4  # raw weights moved
    saved = [t for f in sorted(res.run_dir.rglob("model.safetensors")) for t in load_file(f).values()]
    for a in first:  # every trained tensor is saved at (about) its initial value: the EMA, not the raw weights
        assert any(t.shape == a.shape and torch.allclose(t, a, rtol=0, atol=1e-5) for t in saved), (task, a.shape)


def test_downscale_section_is_typed_and_points_to_the_shared_sections(store, tmp_path):
    cfg = load_config({"task": "downscale"}, ["downscale.factor=2", "downscale.model.hidden=8"])
    assert cfg.downscale.factor == 2 and cfg.downscale.model == {"hidden": 8}
    assert cfg.downscale.epochs is None  # schedule.epochs then
    with pytest.raises(ConfigError, match=r"'lr'.*optimizer\.lr"):
        load_config({"task": "downscale", "downscale": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match="Did you mean 'factor'"):
        load_config({"task": "downscale", "downscale": {"factr": 2}})
    with pytest.raises(ConfigError, match="downscale.factor must be > 0, got 0"):
        load_config({"task": "downscale", "downscale": {"factor": 0}})
    with pytest.raises(ConfigError, match="downscale.channels is empty"):
        load_config({"task": "downscale", "downscale": {"channels": []}})


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (``from atmos.train import loop`` counts)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to atmos.train
                base = ".".join(["atmos", "train", *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("atmos.train."):
            found.add(node.value)  # importlib.import_module("atmos.train.loop")
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("decoder", {"atmos.train.loop", "atmos.train.downscale", "atmos.train.tasks"}),
        ("loop", {"atmos.train.decoder", "atmos.train.downscale", "atmos.train.tasks"}),
        ("downscale", {"atmos.train.loop", "atmos.train.decoder", "atmos.train.tasks"}),
        ("core", {"atmos.train.loop", "atmos.train.decoder", "atmos.train.downscale", "atmos.train.tasks"}),
    ],
)
def test_task_trainers_do_not_import_each_other(module, forbidden):
    imported = _imported_modules(TRAIN_DIR / f"{module}.py")
    assert not imported & forbidden, f"atmos/train/{module}.py imports {sorted(imported & forbidden)}"


def test_area_weights_come_from_the_grid():
    from atmos.grids import HealpixGrid, LatLonGrid
    from atmos.train.core import area_weights

    g = LatLonGrid.equiangular(8, 16, poles=True)
    a = area_weights(g)
    assert a.dtype == torch.float32 and tuple(a.shape) == (8, 16)
    torch.testing.assert_close(a.double(), torch.as_tensor(g.area_weights() / g.area_weights().sum()), rtol=1e-6, atol=0)
    assert float(a[0, 0]) > 0  # exact cell areas: the polar row is not cos(90) = 0
    h = HealpixGrid(2)
    faces = area_weights(h, (12, 2, 2))
    assert tuple(faces.shape) == (12, 2, 2) and float(faces.sum()) == pytest.approx(1.0)
    uniform = area_weights(g, uniform=True)
    assert torch.allclose(uniform, torch.full((8, 16), 1 / 128))


@pytest.mark.parametrize("module", ["decoder", "downscale"])
def test_single_process_tasks_have_no_training_loop_of_their_own(module):
    """decoder/finetune and downscale hand their step to atmos.train.epochs.run_epochs: no
    optimizer, scheduler, backward or EMA of their own."""
    tree = ast.parse((TRAIN_DIR / f"{module}.py").read_text())
    own = sorted(
        {
            n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and (n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
            in {"backward", "build_optimizer", "build_scheduler", "clip_gradients", "EMA", "zero_grad"}
        }
    )
    assert not own, f"atmos/train/{module}.py runs its own training loop ({own}); use atmos.train.epochs.run_epochs"
    assert "run_epochs" in _imported_names(tree)


def _imported_names(tree: ast.AST) -> set[str]:
    return {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}


@pytest.mark.parametrize("task", ["decoder", "finetune", "downscale"])
def test_single_process_tasks_log_the_same_columns(task, store, backbone, tmp_path):
    import csv

    res = fit(_task_config(task, store, tmp_path, backbone))
    with open(res.run_dir / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["epoch", "step", "train_loss", "lr", "train_time_s", "seconds"], header
