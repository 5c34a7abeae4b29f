"""Scored variables: short labels (``z500``, ``t850``, ``t2m``) and canonical fields.

A scored field is a :class:`VariableSpec`: a short ``label`` for scorecards and plots, the
canonical variable ``name`` and the pressure ``level`` (hPa, or None for a surface field).
:func:`parse_variable` reads ``z500``, ``t2m``, ``geopotential_500`` or a canonical name;
:func:`resolve_variables` picks the fields datasets share; :func:`select_variables` stacks
them under their labels.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

import xarray as xr

from atmos.channels import split_name
from atmos.errors import ConfigError, DataError

__all__ = [
    "HEADLINE_VARIABLES",
    "LEVEL_SHORT",
    "SURFACE_SHORT",
    "VariableSpec",
    "parse_variable",
    "resolve_variables",
    "select_variables",
    "short_label",
]

#: Default variables of scorecards and plots (those present are used).
HEADLINE_VARIABLES: tuple[str, ...] = ("z500", "t850", "t2m")
#: One-letter prefixes of pressure-level variables: ``z500`` = geopotential at 500 hPa.
LEVEL_SHORT: dict[str, str] = {
    "z": "geopotential",
    "t": "temperature",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "q": "specific_humidity",
    "w": "vertical_velocity",
    "r": "relative_humidity",
}
#: Short names of single-level variables.
SURFACE_SHORT: dict[str, str] = {
    "t2m": "2m_temperature",
    "d2m": "2m_dewpoint_temperature",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "msl": "mean_sea_level_pressure",
    "sp": "surface_pressure",
    "tcwv": "total_column_water_vapour",
    "tcc": "total_cloud_cover",
    "tp6h": "total_precipitation_6hr",
    "tp24h": "total_precipitation_24hr",
    "tisr": "toa_incident_solar_radiation",
    "sst": "sea_surface_temperature",
}
_LEVEL_LONG = {v: k for k, v in LEVEL_SHORT.items()}
_SURFACE_LONG = {v: k for k, v in SURFACE_SHORT.items()}


# ======================================================================================
# variables
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """One scored field: ``label`` (e.g. ``"z500"``) = variable ``name`` at pressure ``level`` (or None)."""

    label: str
    name: str
    level: int | None = None


def short_label(name: str, level: Any = None) -> str:
    """``("geopotential", 500) -> "z500"``, ``("2m_temperature", None) -> "t2m"``, else ``name`` / ``name_level``."""
    if level is None:
        return _SURFACE_LONG.get(name, name)
    lev = int(level) if float(level) == int(level) else level
    if name in _LEVEL_LONG:
        return f"{_LEVEL_LONG[name]}{lev}"
    return f"{name}_{lev}"


def parse_variable(text: str) -> VariableSpec:
    """Parse ``z500``, ``t850``, ``t2m``, ``geopotential_500`` or a canonical name.

    A canonical name without a level (``"geopotential"``) means all of its levels
    (expanded by :func:`resolve_variables`).
    """
    s = str(text).strip()
    if s in SURFACE_SHORT:
        return VariableSpec(s, SURFACE_SHORT[s], None)
    m = re.fullmatch(r"([a-z])(\d+)", s)
    if m and m[1] in LEVEL_SHORT:
        return VariableSpec(s, LEVEL_SHORT[m[1]], int(m[2]))
    name, level = split_name(s.replace("@", "_") if s.count("@") == 1 else s)
    if level is not None and not s[0].isdigit():
        return VariableSpec(short_label(name, level), name, level)
    return VariableSpec(short_label(s), s, None)


def _time_varying(ds: xr.Dataset) -> list[str]:
    return [str(k) for k, v in ds.data_vars.items() if "time" in v.dims]


def resolve_variables(names: Iterable[str] | None, *datasets: xr.Dataset) -> list[VariableSpec]:
    """Variables to score, present in every dataset.

    ``names=None``: the :data:`HEADLINE_VARIABLES` present in all datasets, or, if none
    is, every common time-varying variable at every common level.
    """
    if not datasets:
        raise ConfigError("resolve_variables needs at least one dataset.")
    if names is None:
        specs = []
        for h in HEADLINE_VARIABLES:
            sp = parse_variable(h)
            if all(_has(ds, sp) for ds in datasets):
                specs.append(sp)
        if specs:
            return specs
        common = [v for v in _time_varying(datasets[0]) if all(v in ds.data_vars for ds in datasets[1:])]
        if not common:
            raise DataError(
                "the forecast and the truth have no variable in common (forecast: "
                f"{sorted(map(str, datasets[0].data_vars))}; truth: {sorted(map(str, datasets[-1].data_vars))})."
            )
        names = common
    out: list[VariableSpec] = []
    for n in names:
        sp = parse_variable(n)
        for ds, what in zip(datasets, ("forecast", "truth", "climatology", "dataset", "dataset"), strict=False):
            if sp.name not in ds.data_vars:
                raise DataError(
                    f"variable {n!r} ({sp.name}) is not in the {what} (it has {sorted(map(str, ds.data_vars))}); "
                    "use short names such as z500, t850, t2m or canonical names."
                )
        da = datasets[0][sp.name]
        if sp.level is None and "level" in da.dims:
            levels = [lv for lv in da["level"].values.tolist() if all(_has(ds, VariableSpec("", sp.name, lv)) for ds in datasets)]
            out.extend(VariableSpec(short_label(sp.name, lv), sp.name, int(lv)) for lv in levels)
            continue
        for ds, what in zip(datasets, ("forecast", "truth", "climatology", "dataset", "dataset"), strict=False):
            if not _has(ds, sp):
                lv = ds[sp.name]["level"].values.tolist() if "level" in ds[sp.name].dims else []
                raise DataError(f"{sp.name} has no level {sp.level} in the {what} (levels {lv}).")
        out.append(sp)
    seen: set[str] = set()
    return [s for s in out if not (s.label in seen or seen.add(s.label))]


def _has(ds: xr.Dataset, sp: VariableSpec) -> bool:
    if sp.name not in ds.data_vars:
        return False
    da = ds[sp.name]
    if sp.level is None:
        return True
    return "level" in da.dims and sp.level in da["level"].values.tolist()


def select_variables(ds: xr.Dataset, specs: Sequence[VariableSpec]) -> xr.Dataset:
    """A Dataset with one variable per spec, named by its label, the level selected (and dropped)."""
    out = {}
    for sp in specs:
        da = ds[sp.name]
        if sp.level is not None:
            da = da.sel(level=sp.level, drop=True)
        out[sp.label] = da.rename(sp.label)
    res = xr.Dataset(out, attrs=dict(ds.attrs))
    if "level" in res.coords and "level" not in res.dims:
        res = res.drop_vars("level")
    return res
