"""Canonical variable and coordinate names, read from the data file ``names.yaml``.

atmos datasets use the WeatherBench2 / ERA5 long names (``geopotential``,
``2m_temperature``, ...) and the coordinates ``time``, ``level`` (hPa), ``latitude``,
``longitude`` (or a HEALPix ``cell`` dimension). Other naming styles (ERA5 short
names, MERRA-2, CMIP6) are mapped onto them by the tables in ``names.yaml``: this
module only interprets those tables, it holds no naming rule of its own.

Style detection
    Each style scores the number of data variables whose name is a key of its table
    (names that are already canonical do not count). The highest score wins; no match
    at all means the ``"canonical"`` style (nothing renamed); a tie between styles with
    a positive score raises :class:`~atmos.errors.DataError` asking for ``style=``.

ERA5 ``z``
    ``z`` with a vertical coordinate (a pressure-level dimension or a scalar level
    coordinate) is ``geopotential``; ``z`` without any vertical coordinate (the ERA5
    single-level / invariant field) is ``geopotential_at_surface``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from atmos.errors import DataError

__all__ = [
    "CANONICAL_STYLE",
    "StyleEntry",
    "UnitsWarning",
    "check_plausible",
    "check_plausible_dataset",
    "canonical_variables",
    "convert_units",
    "coordinate_spec",
    "detect_style",
    "inverse_style",
    "load_names",
    "normalize_units",
    "rename_variables",
    "style_names",
    "units_equal",
    "vertical_names",
]

CANONICAL_STYLE = "canonical"


class UnitsWarning(UserWarning):
    """A variable's units attribute disagrees with its canonical units."""


@dataclass(frozen=True)
class StyleEntry:
    """How one source variable maps onto a canonical variable.

    Attributes
    ----------
    source : str
        Variable name in the source style.
    name : str
        Canonical name.
    scale : float
        Factor applied to the source values (``canonical = source * scale``).
    units : str or None
        Source units the scale expects (``None``: the canonical units, no scaling).
    without_level : str or None
        Canonical name to use when the variable has no vertical coordinate.
    """

    source: str
    name: str
    scale: float = 1.0
    units: str | None = None
    without_level: str | None = None


@dataclass(frozen=True)
class _Names:
    canonical: dict[str, dict[str, Any]]
    coordinates: dict[str, dict[str, Any]]
    equivalent: dict[str, str]
    conversions: dict[tuple[tuple, tuple], tuple[float, float]]
    styles: dict[str, dict[str, StyleEntry]]
    descriptions: dict[str, str] = field(default_factory=dict)
    plausible: dict[str, tuple[float, float]] = field(default_factory=dict)


def _names_text() -> str:
    try:
        return resources.files("atmos.io").joinpath("names.yaml").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, TypeError):  # pragma: no cover - unusual installs
        return Path(__file__).with_name("names.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def load_names() -> _Names:
    """Parse ``names.yaml`` (cached). Returns the internal tables."""
    raw = yaml.safe_load(_names_text())
    equivalent: dict[str, str] = {}
    for target, spellings in raw["units"]["equivalent"].items():
        for s in [target, *spellings]:
            equivalent[str(s).strip().lower()] = str(target)
    names = _Names(
        canonical={str(k): dict(v) for k, v in raw["canonical"].items()},
        coordinates={str(k): dict(v) for k, v in raw["coordinates"].items()},
        equivalent=equivalent,
        conversions={},
        styles={},
        plausible={str(k): (float(v[0]), float(v[1])) for k, v in (raw.get("plausible") or {}).items()},
    )
    for conv in raw["units"]["conversions"]:
        key = (_parse_units(str(conv["from"]), equivalent), _parse_units(str(conv["to"]), equivalent))
        names.conversions[key] = (float(conv.get("scale", 1.0)), float(conv.get("offset", 0.0)))
    for style, spec in raw["styles"].items():
        table: dict[str, StyleEntry] = {}
        for src, val in spec["variables"].items():
            src = str(src)
            if isinstance(val, str):
                table[src] = StyleEntry(src, val)
            else:
                table[src] = StyleEntry(
                    src,
                    str(val["name"]),
                    float(val.get("scale", 1.0)),
                    None if val.get("units") is None else str(val["units"]),
                    val.get("without_level"),
                )
            for target in (table[src].name, table[src].without_level):
                if target is not None and target not in names.canonical:
                    raise DataError(  # pragma: no cover - guards edits of names.yaml
                        f"names.yaml: style {style!r} maps {src!r} to {target!r}, which is not a "
                        "canonical variable; add it under `canonical:` first."
                    )
        names.styles[str(style)] = table
        names.descriptions[str(style)] = str(spec.get("description", ""))
    return names


def style_names() -> list[str]:
    """Known naming styles (``"canonical"`` first)."""
    return [CANONICAL_STYLE, *load_names().styles]


def canonical_variables() -> dict[str, dict[str, Any]]:
    """Canonical variables with their ``units``, ``standard_name``, ``long_name`` (copy)."""
    return {k: dict(v) for k, v in load_names().canonical.items()}


def coordinate_spec(name: str) -> dict[str, Any]:
    """The ``names.yaml`` block of a canonical coordinate (aliases, attrs, conversions)."""
    return load_names().coordinates[name]


def vertical_names() -> list[str]:
    """Names recognised as a pressure-level coordinate (canonical ``level`` first)."""
    return list(dict.fromkeys(["level", *coordinate_spec("level")["aliases"]]))


def inverse_style(style: str) -> dict[str, StyleEntry]:
    """Canonical name -> the first :class:`StyleEntry` of ``style`` producing it.

    ``without_level`` targets are included (ERA5 ``geopotential_at_surface`` -> ``z``).
    """
    table = _style_table(style)
    inv: dict[str, StyleEntry] = {}
    for entry in table.values():
        inv.setdefault(entry.name, entry)
        if entry.without_level is not None:
            inv.setdefault(entry.without_level, StyleEntry(entry.source, entry.without_level))
    return inv


def _style_table(style: str) -> dict[str, StyleEntry]:
    names = load_names()
    if style == CANONICAL_STYLE:
        return {}
    if style not in names.styles:
        raise DataError(
            f"unknown naming style {style!r}; expected one of {style_names()}. "
            "Pass style=None to detect it from the variable names."
        )
    return names.styles[style]


# -- units -----------------------------------------------------------------------------
_TOKEN = re.compile(r"^([A-Za-z%_]+?)\+?(-?\d+)?$")


def _parse_units(units: str, equivalent: Mapping[str, str]) -> tuple:
    s = str(units).strip()
    s = equivalent.get(s.lower(), s)
    if s == "1":
        return ()
    s = s.replace("**", "").replace("^", "")
    parts = s.split("/")
    out: list[tuple[str, int]] = []
    for k, part in enumerate(parts):
        for tok in re.split(r"[\s.*]+", part.strip()):
            if not tok:
                continue
            m = _TOKEN.match(tok)
            if m is None:
                return (("?", s),)  # unparseable: compare as a plain string
            sym = equivalent.get(m.group(1).lower(), m.group(1))
            exp = int(m.group(2) or 1)
            out.append((sym, -exp if k > 0 else exp))
    return tuple(sorted(out))


def normalize_units(units: str | None) -> tuple:
    """A comparable form of a units string (``"m**2 s**-2"`` == ``"m2 s-2"`` == ``"m2/s2"``)."""
    if units is None:
        return ()
    return _parse_units(units, load_names().equivalent)


def units_equal(a: str | None, b: str | None) -> bool:
    """Whether two unit strings mean the same unit (spelling-insensitive)."""
    return normalize_units(a) == normalize_units(b)


def convert_units(da: xr.DataArray, target: str) -> xr.DataArray | None:
    """``da`` converted to ``target`` units with the linear table of ``names.yaml``.

    Returns ``da`` itself when the units already match, the lazily converted array
    (attrs kept, ``units`` set to ``target``) when a conversion is known, and ``None``
    when no conversion is known.
    """
    src = da.attrs.get("units")
    if src is None or units_equal(src, target):
        return da
    key = (normalize_units(src), normalize_units(target))
    conv = load_names().conversions.get(key)
    if conv is None:
        return None
    scale, offset = conv
    out = da * scale + offset if offset else da * scale
    out.attrs = {**da.attrs, "units": target, "atmos_converted_from_units": str(src)}
    out.encoding = dict(da.encoding)
    return out


# -- styles ----------------------------------------------------------------------------
def detect_style(ds: xr.Dataset | Iterable[Hashable]) -> str:
    """Naming style of a dataset (or of an iterable of variable names).

    See the module docstring for the rule. Returns ``"canonical"`` when no style matches.
    """
    names = load_names()
    present = [str(v) for v in (ds.data_vars if isinstance(ds, xr.Dataset) else ds)]
    candidates = [v for v in present if v not in names.canonical]
    scores = {style: sum(v in table for v in candidates) for style, table in names.styles.items()}
    best = max(scores.values(), default=0)
    if best == 0:
        return CANONICAL_STYLE
    winners = [s for s, n in scores.items() if n == best]
    if len(winners) > 1:
        matched = {s: sorted(v for v in candidates if v in names.styles[s]) for s in winners}
        raise DataError(
            f"cannot tell the naming style of variables {sorted(present)}: styles {winners} match "
            f"equally well ({matched}). Pass style= explicitly, one of {style_names()}."
        )
    return winners[0]


def _has_vertical(da: xr.DataArray) -> bool:
    vnames = set(vertical_names())
    return any(str(d) in vnames for d in da.dims) or any(str(c) in vnames for c in da.coords)


def rename_variables(
    ds: xr.Dataset, style: str | None = None, *, on_units: str = "warn"
) -> tuple[xr.Dataset, str]:
    """Rename (and rescale) data variables of ``style`` to canonical names, and check units.

    Parameters
    ----------
    ds
        Dataset with source variable names. Coordinates are not touched here.
    style
        Naming style (``"era5"``, ``"merra2"``, ``"cmip6"``, ``"canonical"``), or ``None``
        to detect it with :func:`detect_style`.
    on_units
        What to do when a canonical variable has units that are neither the canonical
        ones, nor accepted, nor convertible: ``"warn"`` (:class:`UnitsWarning`),
        ``"raise"`` (:class:`~atmos.errors.DataError`) or ``"ignore"``.

    Returns
    -------
    (dataset, style)
        The renamed dataset (lazy: scaling is dask arithmetic) and the style used.
        Renamed variables carry ``attrs["atmos_original_name"]``; variables unknown to
        the style keep their names.
    """
    if on_units not in ("warn", "raise", "ignore"):
        raise DataError(f"on_units={on_units!r}; expected 'warn', 'raise' or 'ignore'.")
    style = detect_style(ds) if style is None else style
    table = _style_table(style)
    names = load_names()

    new_vars: dict[Hashable, xr.DataArray] = {}
    origin: dict[str, str] = {}
    for name, da in ds.data_vars.items():
        entry = table.get(str(name))
        if entry is None:
            target, out = str(name), da
        else:
            target = entry.name
            if entry.without_level is not None and not _has_vertical(da):
                target = entry.without_level
            out = _apply_scale(da, entry, names.canonical[target]["units"])
            out.attrs["atmos_original_name"] = str(name)
        if target in origin:
            raise DataError(
                f"variables {origin[target]!r} and {str(name)!r} both map to the canonical name "
                f"{target!r} (style {style!r}). Drop one of them before opening, e.g. "
                f"ds.drop_vars({str(name)!r})."
            )
        origin[target] = str(name)
        new_vars[target] = out
    for target, da in list(new_vars.items()):
        if str(target) in names.canonical:
            new_vars[target] = _fix_units(str(target), da, on_units)
    out_ds = xr.Dataset(new_vars, coords=ds.coords, attrs=ds.attrs)
    out_ds.encoding = dict(ds.encoding)
    return out_ds, style


def _apply_scale(da: xr.DataArray, entry: StyleEntry, canonical_units: str) -> xr.DataArray:
    if entry.scale == 1.0 or entry.units is None:
        return da.copy(deep=False)
    src = da.attrs.get("units")
    if src is not None and units_equal(src, canonical_units):
        return da.copy(deep=False)  # already converted upstream
    if src is not None and not units_equal(src, entry.units):
        return da.copy(deep=False)  # let the units check below deal with it
    out = da * entry.scale
    out.attrs = {**da.attrs, "units": canonical_units}
    out.encoding = dict(da.encoding)
    return out


def _fix_units(name: str, da: xr.DataArray, on_units: str) -> xr.DataArray:
    info = load_names().canonical[name]
    target = info["units"]
    da = da.copy(deep=False)
    attrs = dict(da.attrs)
    if attrs.get("standard_name") in (None, "", "unknown"):
        attrs["standard_name"] = info["standard_name"]
    if "long_name" not in attrs and "long_name" in info:
        attrs["long_name"] = info["long_name"]
    da.attrs = attrs
    src = attrs.get("units")
    if src is None or str(src).strip() == "":
        da.attrs["units"] = target
        return da
    if units_equal(src, target):
        da.attrs["units"] = target  # canonical spelling (e.g. "m**2 s**-2" -> "m2 s-2")
        return da
    if any(units_equal(src, u) for u in info.get("accept_units", [])):
        return da
    converted = convert_units(da, target)
    if converted is not None:
        return converted
    msg = (
        f"variable {name!r} has units {src!r}, but canonical {name!r} is in {target!r} and no "
        f"conversion from {src!r} is known. Convert it first (e.g. ds[{name!r}] * factor, then set "
        f"attrs['units'] = {target!r}), or fix the units attribute if it is wrong."
    )
    if on_units == "raise":
        raise DataError(msg)
    if on_units == "warn":
        warnings.warn(msg, UnitsWarning, stacklevel=4)
    return da


# -- plausibility ----------------------------------------------------------------------
#: Suggestions when values fall outside the plausible range: (transform, what the data probably are).
_UNIT_SUSPECTS: dict[str, list[tuple[Any, str]]] = {
    "K": [(lambda v: v + 273.15, "degC")],
    "m2 s-2": [(lambda v: v * 9.80665, "m (geopotential height)"), (lambda v: v * 98.0665, "dam")],
    "Pa": [(lambda v: v * 100.0, "hPa"), (lambda v: v * 1000.0, "kPa")],
    "kg kg-1": [(lambda v: v * 0.001, "g kg-1")],
    "1": [(lambda v: v * 0.01, "%")],
}


#: Fraction of values that may lie outside the plausible range before the data are refused.
PLAUSIBLE_TOLERANCE = 0.01


def check_plausible_dataset(ds: Any, where: str = "", samples: int = 3, fix: str | None = None) -> None:
    """:func:`check_plausible` for every canonical variable of ``ds`` at ``samples`` time steps.

    Parameters
    ----------
    ds : xarray.Dataset
        Canonical names and units (as :func:`atmos.io.open_dataset` returns them).
    where : str
        Names the data in the message (e.g. ``" in the training source 'x.zarr'"``).
    samples : int
        Time steps read per variable, evenly spaced (first and last included).
    fix : str, optional
        Replaces the default "how to fix" sentence (e.g. naming a config key).
    """
    names = load_names()
    n_t = int(ds.sizes.get("time", 0))
    pick = sorted({round(float(i)) for i in np.linspace(0, n_t - 1, max(1, samples))}) if n_t else None
    for name in ds.data_vars:
        if str(name) not in names.plausible:
            continue
        da = ds[name]
        if pick is not None and "time" in da.dims:
            da = da.isel(time=pick)
        try:
            check_plausible(str(name), np.asarray(da.values), where)
        except DataError as err:
            if fix is None:
                raise
            msg = str(err)
            raise DataError(msg[: msg.index(" Fix the variable's units")] + " " + fix) from None


def check_plausible(name: str, values: np.ndarray, where: str = "") -> None:
    """Raise if ``values`` of canonical variable ``name`` (canonical units) are physically implausible.

    Parameters
    ----------
    name : str
        Canonical variable name; variables without a range in ``names.yaml`` (``plausible:``)
        are not checked.
    values : numpy.ndarray
        Values in the canonical units (non-finite values are ignored here).
    where : str
        Added to the message (e.g. the channel and time).

    Raises
    ------
    DataError
        More than :data:`PLAUSIBLE_TOLERANCE` of the finite values outside the range: the message
        names the range found, the range expected,
        the units the data probably are in, and the fix (correct the ``units`` attribute, or
        declare the units with ``--assume-units VAR=UNITS`` / ``open_dataset(units=...)``).
    """
    names = load_names()
    rng = names.plausible.get(str(name))
    if rng is None:
        return
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return
    lo, hi = float(v.min()), float(v.max())
    outside = float(np.mean((v < rng[0]) | (v > rng[1])))
    if outside <= PLAUSIBLE_TOLERANCE:  # a stray value (a model glitch) is not a units error
        return
    lo, hi = (float(q) for q in np.percentile(v, [1, 99]))
    units = names.canonical[str(name)]["units"]
    guess = ""
    for fn, what in _UNIT_SUSPECTS.get(str(units), []):
        a, b = fn(lo), fn(hi)
        if rng[0] <= min(a, b) and max(a, b) <= rng[1]:
            guess = f" The values fit data in {what} labelled {units!r}."
            break
    raise DataError(
        f"{name!r}{where} has {100 * outside:.3g}% of its values outside the plausible range {rng[0]:g} .. {rng[1]:g} "
        f"{units} for canonical {name!r} (1st-99th percentile {lo:.6g} .. {hi:.6g}).{guess} "
        "Fix the variable's units attribute so that atmos converts it, "
        f"or declare its units: atmos rollout --assume-units {name}=UNITS (open_dataset(units={{{name!r}: ...}}))."
    )
