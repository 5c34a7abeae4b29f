"""Channel schema: which named channels a model reads and writes, and on what grid.

Every model built by :func:`atmos.models.build` exposes ``model.schema``, a
:class:`ChannelSchema`. The training and rollout code use it to assemble input
tensors from a dataset and to check that a checkpoint fits the data it is applied to.

Tensor contract of a model call (one step)::

    inputs   [B, history, len(inputs), *grid]      state channels at t-history+1 .. t
    forcings [B, history + 1, len(forcings), *grid] prescribed fields at t-history+1 .. t+1
    statics  [len(statics), *grid] | [B, len(statics), *grid] | [B, 1, len(statics), *grid]
    returns  [B, len(outputs), *grid]               residual x[t+1] - x[t], normalized units

``outputs`` is always a prefix of ``inputs``: the first ``len(outputs)`` input
channels are the *prognostic* channels (the residual is added to
``inputs[:, -1, :len(outputs)]``); any further input channels are input-only and
must be supplied from data at every step of a rollout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from atmos.errors import ConfigError

__all__ = [
    "DEFAULT_FORCINGS",
    "DEFAULT_STATICS",
    "DLWP_PROGNOSTICS",
    "ChannelConfig",
    "ChannelSchema",
    "check_int",
]

_GROUPS = ("inputs", "outputs", "forcings", "statics")


def _as_names(group: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            f"schema field {group!r} must be a list of channel names, got {value!r}. "
            f"Pass e.g. {group}=['2m_temperature', 'geopotential_500']."
        )
    names = [str(v) for v in value]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"schema field {group!r} lists channels more than once: {dupes}. "
            "Each channel name must appear once per group."
        )
    return names


def _diff(group: str, expected: list[str], actual: list[str], label: str) -> str | None:
    """Describe how ``actual`` (from ``label``) differs from ``expected`` (the model)."""
    if expected == actual:
        return None
    missing = [n for n in expected if n not in actual]
    extra = [n for n in actual if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing from {label}: {missing}")
    if extra:
        parts.append(f"not expected by the model: {extra}")
    if not missing and not extra:
        pos = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b)
        parts.append(
            f"same channels in a different order (first difference at position {pos}: "
            f"model has {expected[pos]!r}, {label} has {actual[pos]!r})"
        )
    return f"{group}: " + "; ".join(parts) + f". Model order: {expected}."


@dataclass
class ChannelSchema:
    """Named channels and grid of a model.

    Parameters
    ----------
    inputs : list of str
        Channels of each input time step; the first ``len(outputs)`` are the
        prognostic channels, in the same order as ``outputs``.
    outputs : list of str
        Channels of the predicted residual (the prognostic channels).
    forcings : list of str
        Prescribed channels (e.g. ``toa_incident_solar_radiation``), given at the
        ``history`` input steps and at the target step.
    statics : list of str
        Time-invariant channels (e.g. ``land_sea_mask``).
    history : int
        Number of input time steps.
    grid : dict
        JSON-safe grid description, e.g. ``{"type": "latlon", "shape": [32, 64]}``
        or ``{"type": "healpix", "nside": 32, "layout": "faces"}``.
    """

    inputs: list[str]
    outputs: list[str]
    forcings: list[str] = field(default_factory=list)
    statics: list[str] = field(default_factory=list)
    history: int = 1
    grid: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for g in _GROUPS:
            setattr(self, g, _as_names(g, getattr(self, g)))
        if not self.outputs:
            raise ConfigError("schema 'outputs' is empty; a model must predict at least one channel.")
        if self.inputs[: len(self.outputs)] != self.outputs:
            raise ConfigError(
                f"the output channels {self.outputs} must be the first {len(self.outputs)} "
                f"input channels in the same order, but inputs start with "
                f"{self.inputs[: len(self.outputs)]}. Put the prognostic channels first in "
                "'inputs' (input-only channels after them)."
            )
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 1:
            raise ConfigError(f"schema 'history' must be an integer >= 1, got {self.history!r}.")
        if not isinstance(self.grid, Mapping):
            raise ConfigError(f"schema 'grid' must be a dict, got {type(self.grid).__name__}.")
        self.grid = dict(self.grid)

    # -- sizes -----------------------------------------------------------------------
    @property
    def n_prognostic(self) -> int:
        """Number of prognostic channels (== ``len(outputs)``)."""
        return len(self.outputs)

    @property
    def in_channels(self) -> int:
        """Channels after folding time into channels: history*inputs + (history+1)*forcings + statics."""
        return self.history * len(self.inputs) + (self.history + 1) * len(self.forcings) + len(self.statics)

    def input_labels(self) -> list[str]:
        """One label per folded input channel, in :func:`atmos.models.layers.assemble_inputs` order.

        ``"<name>@t-<k>"`` for input step ``k`` before the current one (``k = history-1 .. 0``),
        ``"<name>@f-<k>"`` for forcing steps (``k = history-1 .. 0``), ``"<name>@f+1"`` at the target time, and
        ``"<name>@static"``: two schemas' labels match channel for channel where they mean the same input
        (used to warm-start a model whose inputs grew, e.g. by noise channels).
        """
        H = self.history
        out = [f"{n}@t-{k}" for k in range(H - 1, -1, -1) for n in self.inputs]
        out += [f"{n}@f{-k:+d}" if k < 0 else f"{n}@f-{k}" for k in range(H - 1, -2, -1) for n in self.forcings]
        return out + [f"{n}@static" for n in self.statics]

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict that round-trips through :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChannelSchema:
        known = {"inputs", "outputs", "forcings", "statics", "history", "grid"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown ChannelSchema keys {unknown}; valid keys are {sorted(known)}.")
        if "inputs" not in d or "outputs" not in d:
            raise ConfigError("a ChannelSchema dict needs at least 'inputs' and 'outputs'.")
        return cls(**{k: d[k] for k in known if k in d})

    # -- checks -----------------------------------------------------------------------
    def check_against(
        self,
        other: ChannelSchema | Mapping[str, Any] | None = None,
        *,
        label: str = "the data",
        **groups: Any,
    ) -> None:
        """Raise if ``other`` does not provide exactly the channels of this schema.

        Parameters
        ----------
        other : ChannelSchema or mapping, optional
            The schema of the data (or of another checkpoint), or a mapping with any of
            the keys ``inputs``, ``outputs``, ``forcings``, ``statics``, ``history``,
            ``grid``. Only the keys present are compared (for ``grid``: the entries
            both descriptions have).
        label : str
            How to call ``other`` in the message (``"the data"``, ``"the checkpoint"``).
        **groups
            Same keys as ``other``, given as keyword arguments (merged over ``other``).

        Raises
        ------
        ConfigError
            Naming, per group, the missing channels, the unexpected channels, or the
            first position where the order differs, and how to fix it.
        """
        if isinstance(other, ChannelSchema):
            given: dict[str, Any] = other.to_dict()
        elif other is None:
            given = {}
        elif isinstance(other, Mapping):
            given = dict(other)
        else:
            raise ConfigError(
                f"check_against expects a ChannelSchema or a mapping of channel lists, got "
                f"{type(other).__name__}."
            )
        given.update(groups)
        unknown = sorted(set(given) - {*_GROUPS, "history", "grid"})
        if unknown:
            raise ConfigError(
                f"check_against got unknown keys {unknown}; valid keys are "
                f"{sorted({*_GROUPS, 'history', 'grid'})}."
            )
        problems = []
        for g in _GROUPS:
            if g in given and given[g] is not None:
                msg = _diff(g, getattr(self, g), _as_names(g, given[g]), label)
                if msg:
                    problems.append(msg)
        if given.get("history") is not None and given["history"] != self.history:
            problems.append(
                f"history: model uses {self.history} input steps, {label} has {given['history']}."
            )
        if given.get("grid") and self.grid:
            other_grid = dict(given["grid"])
            common = set(other_grid) & set(self.grid)
            if any(other_grid[k] != self.grid[k] for k in common):
                problems.append(f"grid: model is built for {self.grid}, {label} is on {other_grid}.")
        if problems:
            raise ConfigError(
                f"channel schema mismatch between the model and {label}:\n  - "
                + "\n  - ".join(problems)
                + f"\nFix: select and order the variables of {label} to match model.schema "
                "(same names, same order), or build the model with the channel lists of "
                f"{label} (config keys inputs/outputs/forcings/statics/history)."
            )


# -----------------------------------------------------------------------------
# channel fields shared by every model config
# -----------------------------------------------------------------------------
#: DLWP-HPX's 7 prognostic variables (z500, tau300-700, z1000, t2m, tcwv, t850, z250),
#: named ``{WeatherBench2 name}_{level in hPa}``.
DLWP_PROGNOSTICS = [
    "geopotential_500",
    "geopotential_thickness_300_700",
    "geopotential_1000",
    "2m_temperature",
    "total_column_water_vapour",
    "temperature_850",
    "geopotential_250",
]
DEFAULT_FORCINGS = ["toa_incident_solar_radiation"]
DEFAULT_STATICS = ["land_sea_mask", "geopotential_at_surface"]


@dataclass
class ChannelConfig:
    """Channel fields shared by every model config (see :class:`ChannelSchema`).

    ``outputs=None`` means every input channel is prognostic.
    """

    inputs: list[str] = field(default_factory=lambda: list(DLWP_PROGNOSTICS))
    outputs: list[str] | None = None
    forcings: list[str] = field(default_factory=lambda: list(DEFAULT_FORCINGS))
    statics: list[str] = field(default_factory=lambda: list(DEFAULT_STATICS))
    history: int = 2

    @classmethod
    def data_params(
        cls, channels: Mapping[str, Sequence[str]], history: int, grid: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The config fields that describe the data a model is built for.

        Parameters
        ----------
        channels : mapping
            Channel names of the groups ``inputs``, ``outputs``, ``forcings``, ``statics``.
        history : int
            Input time steps.
        grid : mapping
            The data grid as JSON (``atmos.grids.Grid.to_dict()``: ``{"type": "latlon", "lat": [...],
            "lon": [...], "kind": ...}`` or ``{"type": "healpix", "nside": n, ...}``).

        Returns
        -------
        dict
            ``inputs``, ``outputs``, ``forcings``, ``statics``, ``history`` and the grid fields of
            :meth:`grid_params` (a trainer completes ``model.params`` with them).
        """
        out: dict[str, Any] = {g: list(channels.get(g, [])) for g in _GROUPS}
        out["history"] = int(history)
        out.update(cls.grid_params(grid))
        return out

    @classmethod
    def grid_params(cls, grid: Mapping[str, Any]) -> dict[str, Any]:
        """Config fields for a data grid (see :meth:`data_params`); ``{}`` where the model has none
        or cannot run on that kind of grid. Each model config overrides it."""
        return {}

    def make_schema(self, grid: dict[str, Any]) -> ChannelSchema:
        """The :class:`ChannelSchema` of a model built from this config on ``grid``."""
        inputs = _as_names("inputs", self.inputs)
        outputs = inputs if self.outputs is None else self.outputs
        return ChannelSchema(
            inputs=inputs,
            outputs=list(outputs),
            forcings=list(self.forcings),
            statics=list(self.statics),
            history=self.history,
            grid=grid,
        )


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Validate an integer config value (ConfigError naming it otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int,)) or value < minimum:
        raise ConfigError(f"config {name!r} must be an integer >= {minimum}, got {value!r}.")
    return int(value)
