"""Channels: one record for "which field of which variable at which level".

Every layer of atmos names the fields it stacks into tensors the same way: a surface
variable by its canonical name (``2m_temperature``), a pressure-level variable by
``{variable}_{level in hPa}`` (``geopotential_500``, ``temperature_850``). This module is
the one home of that convention: :func:`channel_name` formats a name, :func:`split_name`
parses one, and :class:`Channel` is the record that data windows, models' schemas,
trainers, the Forecaster and the metrics pass around.

It imports nothing of atmos but :mod:`atmos.errors` (and neither xarray nor torch), so
every layer, :mod:`atmos.grids` and :mod:`atmos.models` included, may use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from atmos.errors import ConfigError, DataError

__all__ = ["Channel", "channel_name", "level_label", "split_name"]

#: ``variable_level``: a level is digits with an optional decimal part (hPa).
_LEVELLED = re.compile(r"^(?P<variable>.+)_(?P<level>\d+(?:\.\d+)?)$")

#: Where a channel's values come from.
SOURCES = ("dataset", "derived", "decoder", "noise")


def level_label(level: Any) -> int | float:
    """A pressure level as it appears in channel names: ``500.0 -> 500``, ``7.5 -> 7.5``.

    Raises
    ------
    ConfigError
        ``level`` is not a finite number.
    """
    try:
        f = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"pressure level {level!r} is not a number; give it in hPa, e.g. 500.") from None
    if not math.isfinite(f):
        raise ConfigError(f"pressure level {level!r} is not finite; give it in hPa, e.g. 500.")
    return int(f) if f.is_integer() else f


def channel_name(variable: str, level: Any = None) -> str:
    """``("geopotential", 500) -> "geopotential_500"``; ``("2m_temperature", None) -> "2m_temperature"``."""
    return str(variable) if level is None else f"{variable}_{level_label(level)}"


def _levelled(variables: Any, var: str) -> bool | None:
    """Whether ``var`` is a pressure-level variable of ``variables`` (None: not in it).

    ``variables`` is an xarray Dataset (a variable with a ``level`` dimension), a mapping
    ``{variable: has_levels}`` or a container of names (each taken to have levels).
    """
    data_vars = getattr(variables, "data_vars", None)
    if data_vars is not None:
        if var not in data_vars:
            return None
        return "level" in variables[var].dims
    if isinstance(variables, Mapping):
        return bool(variables[var]) if var in variables else None
    return True if var in variables else None


def split_name(name: str, variables: Any = None) -> tuple[str, int | float | None]:
    """``"geopotential_500" -> ("geopotential", 500)``; ``"2m_temperature" -> ("2m_temperature", None)``.

    Parameters
    ----------
    name : str
        A channel name.
    variables : xarray.Dataset, mapping or container of str, optional
        What the name refers to. Given, a name that is itself one of the variables is a
        surface channel, and ``variable_level`` is split only when ``variable`` is a
        pressure-level variable there (a Dataset variable with a ``level`` dimension, a
        mapping value that is true, or any member of a plain container). Without it, the
        name is split by its spelling alone.

    Returns
    -------
    (variable, level)
        ``level`` in hPa (int when whole), or None for a surface/static/derived channel.
    """
    name = str(name)
    if variables is not None and _levelled(variables, name) is not None:
        return name, None
    m = _LEVELLED.match(name)
    if m and (variables is None or _levelled(variables, m["variable"])):
        return m["variable"], level_label(m["level"])
    return name, None


@dataclass(frozen=True)
class Channel:
    """One channel of a model tensor: a variable, at one pressure level or none.

    Attributes
    ----------
    name : str
        ``variable`` for surface fields, ``f"{variable}_{level}"`` on pressure levels
        (e.g. ``temperature_850``); see :func:`channel_name`.
    variable : str
        Canonical (WeatherBench2) variable name.
    level : int, float or None
        Pressure level in hPa (None for surface, static, derived and decoder fields).
    units : str or None
        Units of the raw data (``"1"`` for derived forcings).
    source : {"dataset", "derived", "decoder", "noise"}
        Read from the dataset, computed by :mod:`atmos.io.forcings` (a time encoding, not
        normalized), or predicted by a lightweight decoder (physical units).
    mean, std, residual_mean, residual_std : float or None
        The statistics that normalize this channel's state (``mean``/``std``) and its
        one-step residual, when known.
    """

    name: str
    variable: str
    level: int | float | None = None
    units: str | None = None
    source: str = "dataset"
    mean: float | None = None
    std: float | None = None
    residual_mean: float | None = None
    residual_std: float | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(
                f"channel {self.name!r}: source {self.source!r} is not one of {list(SOURCES)}."
            )

    # -- construction -----------------------------------------------------------------
    @classmethod
    def parse(cls, name: str, variables: Any = None, **fields: Any) -> Channel:
        """The channel called ``name`` (see :func:`split_name` for ``variables``).

        ``fields`` sets the other attributes (``units``, ``source``, statistics).
        """
        var, level = split_name(name, variables)
        return cls(str(name), var, level, **fields)

    @classmethod
    def of(cls, variable: str, level: Any = None, **fields: Any) -> Channel:
        """The channel of ``variable`` at ``level`` (None: a surface field), named by :func:`channel_name`."""
        lev = None if level is None else level_label(level)
        return cls(channel_name(variable, lev), str(variable), lev, **fields)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Channel:
        """Inverse of :meth:`to_dict`; a dict without ``variable``/``level`` is parsed from its ``name``.

        Raises
        ------
        ConfigError
            ``d`` has no ``name`` or keys that are not channel attributes.
        """
        if "name" not in d:
            raise ConfigError(f"a channel entry needs a 'name'; got {dict(d)!r}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown channel field(s) {unknown} in {d['name']!r}; valid fields are {sorted(known)}.")
        d = dict(d)
        if "variable" not in d:
            d["variable"], d["level"] = split_name(d["name"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every attribute (the record stored in checkpoints)."""
        return asdict(self)

    def with_(self, **fields: Any) -> Channel:
        """A copy with ``fields`` replaced (e.g. statistics filled in)."""
        return replace(self, **fields)

    # -- selection --------------------------------------------------------------------
    def select(self, ds: Any) -> Any:
        """This channel's DataArray in ``ds`` (the ``level`` dimension selected and dropped).

        Levels match to within floating-point rounding (``500`` finds ``500.0``).

        Raises
        ------
        DataError
            ``ds`` has no such variable, or not this level.
        """
        if self.variable not in ds.data_vars:
            raise DataError(
                f"channel {self.name!r} not found: expected a variable {self.variable!r}"
                + (" with a 'level' coordinate" if self.level is not None else "")
                + f"; the dataset has {sorted(map(str, ds.data_vars))}."
            )
        da = ds[self.variable]
        if self.level is None:
            return da
        if "level" not in da.dims:
            raise DataError(
                f"channel {self.name!r}: variable {self.variable!r} has no 'level' dimension "
                f"(dims {list(da.dims)}); use the channel name {self.variable!r}."
            )
        have = [float(v) for v in ds["level"].values]
        hit = [i for i, v in enumerate(have) if math.isclose(v, float(self.level), rel_tol=1e-9, abs_tol=1e-6)]
        if not hit:
            raise DataError(
                f"channel {self.name!r}: level {self.level} not in the levels "
                f"{[level_label(v) for v in have]} of {self.variable!r}."
            )
        return da.isel(level=hit[0]).drop_vars("level")

    @property
    def key(self) -> tuple[str, int | float | None]:
        """``(variable, level)``: what the channel reads, independent of its statistics."""
        return self.variable, self.level
