"""The dataset catalog, a pure resolver: names -> locations of data cubes that :func:`atmos.open_dataset` opens.

Entries live in YAML files (``datasets:`` list, one mapping per dataset) in

1. the packaged catalog folder ``atmos.catalogs`` (the top-level ``catalogs/`` folder of
   a source checkout), then
2. each folder (or single ``.yaml`` file) listed in the environment variable
   ``ATMOS_CATALOG_PATH`` (separated by ``os.pathsep``), in order.

A later entry with the same name replaces an earlier one, so users can override the
packaged entries. Locations may contain environment placeholders ``${NAME}`` or
``${NAME:-default}`` (e.g. ``${ATMOS_DATA}/speedy-world-2018.zarr``), resolved when the
entry is opened or :func:`resolve` d.

Entry fields: ``name``, ``description``, ``url`` (or ``path``), ``grid`` (e.g.
``{type: latlon, kind: equiangular, nlat: 32, nlon: 64, poles: false}``), ``time_step``,
``period`` (``[start, end]``), ``variables``, ``levels`` (hPa), ``license``,
``citation``, ``open`` (keyword arguments for :func:`atmos.open_dataset`, e.g.
``{storage_options: {token: anon}}``). Other keys are kept in ``extra``.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from atmos.errors import CatalogError, SourceError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "CatalogEntry",
    "catalog_dirs",
    "entry_names",
    "get_entry",
    "list_entries",
    "lookup",
    "refresh",
    "resolve",
]

ENV_CATALOG_PATH = "ATMOS_CATALOG_PATH"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FIRST_SENTENCE = re.compile(r"(?<=[a-z0-9)])\.\s+(?=[A-Z])")
#: libyaml's parser where PyYAML has it (about 10x faster; same safe constructors, same errors).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KNOWN = {
    "name",
    "description",
    "url",
    "path",
    "grid",
    "time_step",
    "period",
    "variables",
    "levels",
    "license",
    "citation",
    "open",
}


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset of the catalog (see the module docstring for the fields)."""

    name: str
    description: str
    url: str
    grid: dict[str, Any] = field(default_factory=dict)
    time_step: str | None = None
    period: tuple[str, str] | None = None
    variables: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    license: str = ""
    citation: str = ""
    open: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # -- locations ---------------------------------------------------------------------
    def placeholders(self) -> list[str]:
        """Environment variables named in the location (``${NAME}``)."""
        return [m.group(1) for m in _PLACEHOLDER.finditer(self.url)]

    def resolve(self) -> str:
        """The location with environment placeholders filled in.

        Raises
        ------
        SourceError
            A placeholder without default names an unset environment variable.
        """

        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            value = os.environ.get(var)
            if value:
                return value
            if default is not None:
                return default
            raise SourceError(
                f"catalog entry {self.name!r} is located at {self.url!r}, but the environment "
                f"variable {var} is not set. Set it to the folder holding the data, e.g. "
                f"`export {var}=/path/to/data`, or open the data by path instead."
            )

        url = _PLACEHOLDER.sub(sub, self.url)
        return url if "://" in url else os.path.expanduser(url)

    def open_dataset(self, **kwargs: Any) -> xr.Dataset:
        """Open this entry with :func:`atmos.io.open.open_dataset` (keyword args override ``open``)."""
        from atmos.io.open import open_dataset

        return open_dataset(self.name, **kwargs)

    def grid_object(self) -> Any:
        """The :class:`~atmos.grids.LatLonGrid` / :class:`~atmos.grids.HealpixGrid` of ``grid``, if it can be built."""
        g = self.grid
        if g.get("type") == "latlon" and "nlat" in g and "nlon" in g:
            from atmos.grids.latlon import LatLonGrid

            kind = g.get("kind", "equiangular")
            if kind == "gaussian":
                return LatLonGrid.gaussian(int(g["nlat"]), int(g["nlon"]))
            if kind in ("equiangular", "equiangular_with_poles"):
                poles = bool(g.get("poles", kind == "equiangular_with_poles"))
                return LatLonGrid.equiangular(int(g["nlat"]), int(g["nlon"]), poles=poles)
        if g.get("type") == "healpix" and "nside" in g:
            from atmos.grids.healpix import HealpixGrid

            return HealpixGrid(int(g["nside"]), g.get("order", "nest"))
        return None

    # -- display -----------------------------------------------------------------------
    def grid_summary(self) -> str:
        g = self.grid
        if not g:
            return "?"
        if g.get("type") == "latlon":
            size = f"{g.get('nlon', '?')}x{g.get('nlat', '?')}"
            kind = g.get("kind", "")
            poles = " with poles" if g.get("poles") and "poles" not in kind else ""
            return f"latlon {size} {kind}{poles}".strip()
        if g.get("type") == "healpix":
            return f"healpix nside={g.get('nside', '?')}"
        return ", ".join(f"{k}={v}" for k, v in g.items())

    def period_summary(self) -> str:
        return f"{self.period[0]} .. {self.period[1]}" if self.period else "?"

    def row(self) -> dict[str, str]:
        """A flat row for a table (all values strings)."""
        first = _FIRST_SENTENCE.split(self.description.strip(), maxsplit=1)[0].rstrip(".")
        if len(first) > 100:
            first = first[:99].rsplit(" ", 1)[0] + " ..."
        return {
            "name": self.name,
            "grid": self.grid_summary(),
            "time_step": self.time_step or "?",
            "period": self.period_summary(),
            "variables": str(len(self.variables)),
            "levels": str(len(self.levels)),
            "location": self.url,
            "description": first,
        }

    def describe(self) -> str:
        """A multi-line human-readable description (for ``atmos catalog show``)."""
        try:
            resolved = self.resolve()
        except SourceError:
            unset = [v for v in self.placeholders() if not os.environ.get(v)]
            resolved = f"(unresolved: set the environment variable(s) {', '.join(unset)})"

        def wrap(text: str, ind: str = "    ") -> str:
            return textwrap.fill(" ".join(str(text).split()), 88, initial_indent=ind, subsequent_indent=ind)

        lines = [
            f"{self.name}",
            wrap(self.description),
            f"  location:  {self.url}",
        ]
        if resolved != self.url:
            lines.append(f"  resolved:  {resolved}")
        lines += [
            f"  grid:      {self.grid_summary()}",
            f"  time step: {self.time_step or '?'}",
            f"  period:    {self.period_summary()}",
        ]
        if self.levels:
            lines.append(f"  levels ({len(self.levels)}, hPa):")
            lines.append(wrap(", ".join(f"{lv:g}" for lv in self.levels)))
        if self.variables:
            lines.append(f"  variables ({len(self.variables)}):")
            lines.append(wrap(", ".join(self.variables)))
        if self.open:
            lines.append(f"  open with: {self.open}")
        if self.license:
            lines.append("  license:")
            lines.append(wrap(self.license))
        if self.citation:
            lines.append("  citation:")
            lines.append(wrap(self.citation))
        if self.source_file:
            lines.append(f"  defined in: {self.source_file}")
        return "\n".join(lines)


# -- loading ---------------------------------------------------------------------------
def _packaged_dir() -> Any:
    """The packaged catalog folder (a path-like ``Traversable``), or None.

    ``importlib.resources`` finds it in an installed package (``atmos.catalogs``, mapped
    from the top-level ``catalogs/`` folder); a source checkout falls back to
    ``<repo>/catalogs``.
    """
    try:
        files = resources.files("atmos.catalogs")
        if any(_is_yaml(f) for f in files.iterdir()):
            return files
    except (ModuleNotFoundError, TypeError, ValueError, OSError):
        pass
    here = Path(__file__).resolve().parent
    for cand in (here / "catalogs", here.parent / "catalogs"):
        if cand.is_dir():
            return cand
    return None


def _is_yaml(f: Any) -> bool:
    return f.name.endswith((".yaml", ".yml")) and f.is_file()


def catalog_dirs() -> list[Any]:
    """Folders (or files) searched for catalog YAML files, in order of precedence (last wins)."""
    out: list[Any] = []
    packaged = _packaged_dir()
    if packaged is not None:
        out.append(packaged)
    for part in os.environ.get(ENV_CATALOG_PATH, "").split(os.pathsep):
        if part.strip():
            out.append(Path(os.path.expanduser(part.strip())))
    return out


def _yaml_files(location: Any) -> list[Any]:
    if location.is_file():
        return [location]
    if location.is_dir():
        return sorted((f for f in location.iterdir() if _is_yaml(f)), key=lambda f: f.name)
    raise CatalogError(
        f"catalog location {str(location)!r} (from {ENV_CATALOG_PATH}) does not exist; expected a "
        f"folder of .yaml files or a .yaml file. Fix or remove it from {ENV_CATALOG_PATH}."
    )


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _parse_entry(raw: Any, file: Any, k: int) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{file}: item {k} of 'datasets' is {raw!r}; expected a mapping with name, url, ..."
        )
    missing = [key for key in ("name", "description") if not raw.get(key)]
    if not (raw.get("url") or raw.get("path")):
        missing.append("url (or path)")
    if missing:
        raise CatalogError(
            f"{file}: entry {raw.get('name', f'#{k}')!r} lacks {missing}; every entry needs a name, "
            "a description and a url/path. Add them to the YAML file."
        )
    period = raw.get("period")
    if period is not None:
        if not (isinstance(period, (list, tuple)) and len(period) == 2):
            raise CatalogError(f"{file}: entry {raw['name']!r} has period {period!r}; expected [start, end].")
        period = (str(period[0]), str(period[1]))
    open_kw = raw.get("open") or {}
    if not isinstance(open_kw, dict):
        raise CatalogError(
            f"{file}: entry {raw['name']!r} has open={open_kw!r}; expected a mapping of keyword args."
        )
    return CatalogEntry(
        name=str(raw["name"]),
        description=" ".join(str(raw["description"]).split()),
        url=str(raw.get("url") or raw.get("path")),
        grid=dict(raw.get("grid") or {}),
        time_step=None if raw.get("time_step") is None else str(raw["time_step"]),
        period=period,
        variables=tuple(str(v) for v in _as_tuple(raw.get("variables"))),
        levels=tuple(_as_tuple(raw.get("levels"))),
        license=" ".join(str(raw.get("license", "")).split()),
        citation=" ".join(str(raw.get("citation", "")).split()),
        open=dict(open_kw),
        source_file=str(file),
        extra={key: v for key, v in raw.items() if key not in _KNOWN},
    )


def _read_file(file: Any) -> list[CatalogEntry]:
    try:
        doc = yaml.load(file.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(f"cannot read catalog file {str(file)!r}: {e}. Fix the YAML syntax.") from e
    if doc is None:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list):
        raise CatalogError(
            f"catalog file {str(file)!r} has no 'datasets:' list at the top; expected\n"
            "datasets:\n  - name: ...\n    description: ...\n    url: ..."
        )
    entries = [_parse_entry(raw, file, k) for k, raw in enumerate(doc["datasets"])]
    names = [e.name for e in entries]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise CatalogError(f"catalog file {str(file)!r} defines {dups} more than once; keep one of each.")
    return entries


@lru_cache(maxsize=8)
def _load(env_value: str) -> dict[str, CatalogEntry]:
    del env_value  # part of the cache key only
    out: dict[str, CatalogEntry] = {}
    has_packaged = _packaged_dir() is not None
    for k, loc in enumerate(catalog_dirs()):
        seen_here: dict[str, str] = {}
        for file in _yaml_files(loc):
            for entry in _read_file(file):
                if has_packaged and k == 0 and entry.name in seen_here:
                    raise CatalogError(
                        f"catalog entry {entry.name!r} is defined in both {seen_here[entry.name]} and "
                        f"{file}; keep it in one file."
                    )
                seen_here[entry.name] = str(file)
                out[entry.name] = entry
    return out


def _entries() -> dict[str, CatalogEntry]:
    return _load(os.environ.get(ENV_CATALOG_PATH, ""))


def refresh() -> None:
    """Forget the cached catalog (re-read the YAML files on next use)."""
    _load.cache_clear()


def entry_names() -> list[str]:
    """Names of all catalog entries, sorted."""
    return sorted(_entries())


def list_entries() -> list[dict[str, str]]:
    """One row per entry (``name``, ``grid``, ``time_step``, ``period``, ``variables``,
    ``levels``, ``location``, ``description``), sorted by name; all values are strings."""
    entries = _entries()
    return [entries[n].row() for n in sorted(entries)]


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``.

    Raises
    ------
    CatalogError
        There is no such entry (the message lists the names).
    """
    entries = _entries()
    if name not in entries:
        raise CatalogError(
            f"no catalog entry named {name!r}; the catalog has {sorted(entries)}. Use one of those "
            f"names, or add an entry in a YAML file on {ENV_CATALOG_PATH}."
        )
    return entries[name]


def resolve(name: str) -> str:
    """Location (URL or path, placeholders filled in) of the entry ``name``."""
    return get_entry(name).resolve()


def lookup(name: str) -> tuple[str, dict[str, Any]] | None:
    """Location and ``open`` keyword arguments of the entry ``name``; None if there is no such entry.

    This is what :func:`atmos.open_dataset` asks to open a catalog name (:mod:`atmos`
    installs it with :func:`atmos.io.open.set_name_resolver`; the catalog only resolves names,
    atmos.io opens the data).

    Raises
    ------
    SourceError
        The entry's location names an unset environment variable (see :meth:`CatalogEntry.resolve`).
    """
    entry = _entries().get(name)
    return None if entry is None else (entry.resolve(), dict(entry.open))
