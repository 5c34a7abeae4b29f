"""Validate a training config completely, in seconds, before a job starts (``atmos train --check``).

:func:`check_config` runs every check that does not need the data values or a model's
weights: the config's keys and types (each section against its dataclass), the values
:func:`atmos.train.config.validate_config` constrains, the model name and ``model.params``
against the model's config class (the model is built on the ``meta`` device: shapes
only, no memory), the data and validation sources (catalog names resolve, paths exist;
opened lazily with :func:`atmos.io.open_dataset`, only metadata is read), the variables,
levels, forcings and statics present in them, the periods inside their time range, the
task sections (the decoder backbone exists, the downscale channels are in the data) and
the output folder writable. Every problem is collected (a :class:`Problem` names the
config key, what is wrong and the fix) instead of stopping at the first.

>>> from atmos.train.check import check
>>> report = check("configs/vit_speedy.yaml", ["optimizer.lr=3e-4"])   # doctest: +SKIP
>>> report.ok, report.problems, report.summary                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atmos.errors import AtmosError, ConfigError
from atmos.train import config as _config
from atmos.train.config import TrainConfig

__all__ = ["ConfigCheck", "Problem", "check", "check_config", "structure_problems"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config.

    Attributes
    ----------
    where : str
        The config key (``data.variables``, ``model.params.num_heads``) or ``config``.
    message : str
        What is wrong, with the offending value and the valid options.
    fix : str
        How to fix it ("" when the message already says so).
    """

    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class ConfigCheck:
    """Result of :func:`check`: the config (None when it could not be built), problems, a summary."""

    config: TrainConfig | None
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _suggest(value: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


# -- structure: keys and types of every section ----------------------------------------------


def structure_problems(d: Mapping[str, Any], cls: type = TrainConfig, where: str = "") -> list[Problem]:
    """Every unknown key and wrongly typed value of a config mapping (not only the first).

    Parameters
    ----------
    d : mapping
        The raw config (YAML loaded, overrides applied).
    cls : dataclass type
        The section's dataclass (default the whole :class:`TrainConfig`).
    where : str
        Dotted prefix of the section.
    """
    if not isinstance(d, Mapping):
        return [Problem(where or "config", f"must be a mapping, got {d!r} ({type(d).__name__}).")]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out: list[Problem] = []
    for key, value in d.items():
        key = str(key)
        path = f"{where}.{key}" if where else key
        if key not in names:
            out.append(Problem(path, f"unknown key {key!r} in {where or 'the config'}; valid keys are {names}."
                               f"{_suggest(key, names)}", "rename or remove it."))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            out.extend(structure_problems(value, tp, path))
            continue
        try:
            _config._coerce(value, tp, path)
        except ConfigError as err:
            out.append(Problem(path, str(err), f"give a value of type {_config._type_name(tp)}."))
    return out


def _load_raw(source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str]) -> tuple[dict, str | None]:
    if isinstance(source, Mapping):
        d, stem = _config._deep_copy(source), None
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a YAML training config.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at top level, got {type(loaded).__name__}.")
        d, stem = _config._deep_copy(loaded), path.stem
    for text in overrides:
        _config._apply_override(d, text)
    return d, stem


# -- data -------------------------------------------------------------------------------------


def _open(source: str, units: Any, where: str, problems: list[Problem]):
    from atmos.io.open import open_dataset

    try:
        return open_dataset(source, units=units)
    except AtmosError as err:
        problems.append(Problem(where, f"cannot open {source!r}: {err}",
                                "use a catalog name (`atmos catalog list`), an existing path or a URL."))
    except (OSError, ValueError, KeyError) as err:
        problems.append(Problem(where, f"cannot open {source!r} ({type(err).__name__}: {err}).",
                                "use a catalog name (`atmos catalog list`), an existing path or a URL."))
    return None


def _check_names(ds, names: Sequence[str], where: str, source: str, problems: list[Problem]) -> None:
    have = sorted(map(str, ds.data_vars))
    for name in names:
        if name not in ds.data_vars:
            problems.append(Problem(
                where, f"{name!r} is not in {source!r}; it has {have}.{_suggest(name, have)}",
                f"remove {name!r} from {where} or use a source that has it."))


def _data_levels(ds) -> list[int]:
    return [int(v) for v in ds["level"].values] if "level" in ds.dims else []


def _check_levels(ds, levels: Sequence[int] | None, variables: Sequence[str], source: str,
                  problems: list[Problem]) -> None:
    if levels is None:
        return
    levelled = [v for v in variables if v in ds.data_vars and "level" in ds[v].dims]
    have = _data_levels(ds)
    if not levelled:
        return
    miss = [lv for lv in levels if lv not in have]
    if miss:
        problems.append(Problem("data.levels", f"levels {miss} are not in {source!r}; it has levels {have}.",
                                f"choose data.levels among {have} (or null for all)."))


def _check_period(ds, period: Sequence[str] | None, where: str, source: str, steps_needed: int,
                  problems: list[Problem]) -> int | None:
    """Check a period against the data's time range; return the number of time steps it selects."""
    import pandas as pd

    if "time" not in ds.dims:
        problems.append(Problem(where.rsplit(".", 1)[0] + ".source", f"{source!r} has no time dimension.",
                                "train on a time series cube."))
        return None
    t = ds.indexes["time"]
    lo, hi = t[0], t[-1]
    if period is None:
        n = t.size
    else:
        try:
            start, end = pd.Timestamp(str(period[0])), pd.Timestamp(str(period[1]))
        except (ValueError, TypeError) as err:
            problems.append(Problem(where, f"{list(period)} is not a pair of dates ({err}).",
                                    "give ISO dates, e.g. [2018-01-01, 2018-12-31]."))
            return None
        if start > end:
            problems.append(Problem(where, f"starts after it ends: {list(period)}.", "swap the two dates."))
            return None
        if start < lo.floor("D") or end > hi:
            problems.append(Problem(
                where, f"{list(period)} reaches outside the time range of {source!r}, {lo} .. {hi}.",
                f"choose a period inside {lo.date()} .. {hi.date()}."))
            return None
        n = int(ds["time"].sel(time=slice(str(period[0]), str(period[1]))).size)
    if n is not None and n < steps_needed:
        problems.append(Problem(
            where, f"selects {n} time step(s) of {source!r}, fewer than the {steps_needed} one window needs "
            "(data.history + rollout steps).", "choose a longer period."))
    return n


def _grid_dict(cfg: TrainConfig, ds) -> dict[str, Any] | None:
    from atmos.io.coords import grid_of

    try:
        if cfg.data.grid == "healpix":
            from atmos.grids import HealpixGrid

            return HealpixGrid(int(cfg.data.nside), "nest").to_dict()
        return grid_of(ds).to_dict()
    except AtmosError:
        return None


def _channels(cfg: TrainConfig, ds) -> dict[str, list[str]]:
    from atmos.channels import channel_name

    d = cfg.data
    inputs: list[str] = []
    for v in d.variables:
        if ds is not None and v in ds.data_vars and "level" in ds[v].dims:
            levels = d.levels if d.levels is not None else _data_levels(ds)
            inputs += [channel_name(v, lv) for lv in levels]
        else:
            inputs.append(v)
    return {"inputs": inputs, "outputs": list(inputs), "forcings": list(d.forcings), "statics": list(d.statics)}


def _check_model(cfg: TrainConfig, ds, problems: list[Problem], summary: dict[str, Any]) -> None:
    from atmos.models.registry import MODELS, build, config_class

    name = cfg.model.name
    if name not in MODELS:
        problems.append(Problem("model.name", f"unknown model name {name!r}; valid names are {sorted(MODELS)}."
                                f"{_suggest(name, list(MODELS))}", "set model.name to one of them."))
        return
    cfg_cls = config_class(name)
    valid = [f.name for f in dataclasses.fields(cfg_cls)]
    params = dict(cfg.model.params)
    unknown = [k for k in params if k not in valid]
    for k in unknown:
        problems.append(Problem(f"model.params.{k}", f"unknown parameter {k!r} of model {name!r} "
                                f"({cfg_cls.__name__}); valid parameters are {sorted(valid)}.{_suggest(k, valid)}",
                                "rename or remove it."))
    if unknown:
        return
    hints = typing.get_type_hints(cfg_cls)
    bad = False
    for k, v in params.items():
        try:
            _config._coerce(v, hints[k], f"model.params.{k}")
        except ConfigError as err:
            problems.append(Problem(f"model.params.{k}", str(err), f"give a {_config._type_name(hints[k])}."))
            bad = True
    if bad:
        return
    if ds is not None and cfg.task == "forecast" and hasattr(cfg_cls, "data_params"):
        grid = _grid_dict(cfg, ds)
        if grid is not None:
            filled = cfg_cls.data_params(_channels(cfg, ds), cfg.data.history, grid)
            if "inputs" in params or "outputs" in params:
                filled.pop("inputs")
                filled.pop("outputs")
            for k, v in filled.items():
                params.setdefault(k, v)
    try:
        cfg_cls(**params)
    except (AtmosError, TypeError, ValueError) as err:
        problems.append(Problem("model.params", f"invalid parameters for model {name!r}: {err}",
                                f"fix model.params (fields of {cfg_cls.__name__})."))
        return
    if cfg.task != "forecast":
        return
    try:
        import torch

        try:
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                model = build(name, **params)
        except (RuntimeError, NotImplementedError, TypeError) as err:
            if "meta" not in str(err):
                raise
            model = build(name, **params)  # a model that computes buffers with numpy: build it for real
        summary["parameters"] = int(sum(p.numel() for p in model.parameters()))
    except (AtmosError, TypeError, ValueError, RuntimeError) as err:
        problems.append(Problem("model.params", f"model {name!r} cannot be built with these parameters: {err}",
                                "fix model.params."))


def _check_source(cfg: TrainConfig, source: str, period, section: str, steps: int,
                  problems: list[Problem], summary: dict[str, Any]):
    from atmos.io.forcings import DERIVED_FORCINGS

    d = cfg.data
    ds = _open(source, d.units, f"{section}.source", problems)
    if ds is None:
        return None
    label = "training" if section == "data" else "validation"
    if cfg.task in ("forecast",):
        _check_names(ds, d.variables, "data.variables", source, problems)
        _check_names(ds, [f for f in d.forcings if f not in DERIVED_FORCINGS], "data.forcings", source, problems)
        _check_names(ds, d.statics, "data.statics", source, problems)
        _check_levels(ds, d.levels, d.variables, source, problems)
    elif cfg.task in ("decoder", "finetune"):
        _check_names(ds, cfg.decoder.variables, "decoder.variables", source, problems)
    elif cfg.task == "downscale":
        _check_downscale(cfg, ds, source, problems)
    n = _check_period(ds, period, f"{section}.period", source, steps, problems)
    summary[label] = {"source": source, "steps": n,
                      "time": None if "time" not in ds.dims else
                      f"{ds.indexes['time'][0]} .. {ds.indexes['time'][-1]}"}
    return ds


def _check_downscale(cfg: TrainConfig, ds, source: str, problems: list[Problem]) -> None:
    from atmos.channels import split_name

    dc = cfg.downscale
    have = sorted(map(str, ds.data_vars))
    levels = _data_levels(ds)
    for c in dc.channels:
        var, lv = split_name(c, ds)
        if var not in ds.data_vars:
            problems.append(Problem("downscale.channels", f"channel {c!r}: variable {var!r} is not in {source!r}; "
                                    f"it has {have}.{_suggest(var, have)}", f"remove {c!r} or use a source that has it."))
        elif lv is not None and lv not in levels:
            problems.append(Problem("downscale.channels", f"channel {c!r}: level {lv} is not in {source!r}; "
                                    f"it has levels {levels}.", f"use one of {[f'{var}_{x}' for x in levels]}."))
        elif lv is None and "level" in ds[var].dims:
            problems.append(Problem("downscale.channels", f"channel {c!r} is a pressure-level variable; name a "
                                    f"level.", f"use e.g. {var}_{levels[0] if levels else 500}."))
    _check_names(ds, dc.statics, "downscale.statics", source, problems)
    for dim in ("latitude", "longitude"):
        if dim in ds.dims and ds.sizes[dim] % int(dc.factor):
            problems.append(Problem("downscale.factor", f"{dc.factor} does not divide the {ds.sizes[dim]} "
                                    f"{dim}s of {source!r}.", "choose a factor that divides the grid size."))


def _check_task(cfg: TrainConfig, problems: list[Problem]) -> None:
    if cfg.task not in ("decoder", "finetune"):
        return
    from atmos.models.checkpoint import find_checkpoint

    if str(cfg.backbone) == "sample":
        return
    p = Path(str(cfg.backbone)).expanduser()
    if not p.exists():
        problems.append(Problem("backbone", f"{str(cfg.backbone)!r} does not exist.",
                                "set `backbone:` to a run folder or checkpoint written by `atmos train`, or `sample` "
                                "for the embedded sample model."))
    elif find_checkpoint(p) is None:
        problems.append(Problem("backbone", f"{str(cfg.backbone)!r} is not an atmos checkpoint or run folder (no "
                                "checkpoint.json there).", "point `backbone:` at a folder written by `atmos train`."))


def _check_output(cfg: TrainConfig, resume: str | None, problems: list[Problem], summary: dict[str, Any]) -> None:
    from atmos.io.paths import check_writable

    run_dir = Path(cfg.output.dir) / str(cfg.output.name or cfg.model.name)
    summary["run_dir"] = str(run_dir)
    try:
        check_writable(run_dir, "output.dir", hint="Set output.dir to a writable folder")
    except ConfigError as err:
        problems.append(Problem("output.dir", str(err)))
        return
    ckpts = run_dir / "checkpoints"
    if resume is None and not cfg.output.overwrite and ckpts.is_dir() and any(ckpts.iterdir()):
        problems.append(Problem("output.name", f"run folder {str(run_dir)!r} already holds checkpoints.",
                                "pass --resume to continue it, output.overwrite=true to replace it, or another "
                                "output.name."))
    if cfg.data.stats and not Path(cfg.data.stats).exists() and "://" not in cfg.data.stats:
        problems.append(Problem("data.stats", f"statistics file {cfg.data.stats!r} does not exist.",
                                "compute it with `atmos stats SOURCE -o FILE` or set data.stats: null."))


def check_config(cfg: TrainConfig, resume: str | None = None, summary: dict[str, Any] | None = None) -> list[Problem]:
    """Every problem of a (structurally valid) config that can be found without training.

    Parameters
    ----------
    cfg : TrainConfig
        A config built by :func:`atmos.train.config.load_config` (keys and types already checked).
    resume : str, optional
        ``--resume`` as given to ``atmos train`` (an existing run folder is then fine).
    summary : dict, optional
        Filled with what was checked (channels, periods, parameters, run folder).

    Returns
    -------
    list of Problem
        Empty when the config is good.
    """
    summary = {} if summary is None else summary
    problems: list[Problem] = []
    try:
        _config.validate_config(cfg)
    except ConfigError as err:
        problems.append(Problem("config", str(err)))
    steps = int(cfg.data.history) + int(cfg.multistep.max_steps)
    ds = _check_source(cfg, cfg.data.source, cfg.data.period, "data", steps, problems, summary)
    if cfg.validation.source:
        vsteps = int(cfg.data.history) + int(cfg.validation.steps)
        _check_source(cfg, cfg.validation.source, cfg.validation.period, "validation", vsteps, problems, summary)
    if cfg.task == "forecast":
        ch = _channels(cfg, ds)
        summary["channels"] = {g: len(v) for g, v in ch.items() if g != "outputs"}
        grid = _grid_dict(cfg, ds) if ds is not None else None
        if grid is not None:
            summary["grid"] = (f"healpix nside {grid.get('nside')}" if grid.get("type") == "healpix"
                               else f"latlon {len(grid['lat'])}x{len(grid['lon'])}")
    if cfg.task != "downscale":
        _check_model(cfg, ds, problems, summary)
    _check_task(cfg, problems)
    _check_output(cfg, resume, problems, summary)
    return problems


def check(source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (),
          resume: str | None = None) -> ConfigCheck:
    """Load and check a config file (or mapping) with overrides, collecting every problem.

    Parameters
    ----------
    source : path or mapping
        The YAML config (as given to ``atmos train``).
    overrides : sequence of str
        ``key=value`` overrides.
    resume : str, optional
        ``--resume`` as given to ``atmos train``.

    Returns
    -------
    ConfigCheck
        ``config`` is None when the keys or types are wrong (then only those problems are listed).
    """
    t0 = time.perf_counter()
    try:
        d, stem = _load_raw(source, overrides)
    except ConfigError as err:
        return ConfigCheck(None, [Problem("config", str(err))], seconds=time.perf_counter() - t0)
    problems = structure_problems(d)
    if problems:
        return ConfigCheck(None, problems, seconds=time.perf_counter() - t0)
    try:
        cfg = _config._from_mapping(TrainConfig, d, "")
    except ConfigError as err:
        return ConfigCheck(None, [Problem("config", str(err))], seconds=time.perf_counter() - t0)
    if cfg.output.name is None:
        cfg.output.name = stem or cfg.model.name
    summary: dict[str, Any] = {"task": cfg.task, "model": cfg.model.name}
    problems = check_config(cfg, resume=resume, summary=summary)
    return ConfigCheck(cfg, problems, summary, time.perf_counter() - t0)
