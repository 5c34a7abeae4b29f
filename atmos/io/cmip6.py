"""CMIP6-style yearly fields (one netCDF file per variable, scenario and member) and global driver tables.

Input files are yearly fields, one file per (variable,) scenario and ensemble
member, e.g. the ETH cmip6-ng layout ``tas_ann_IPSL-CM6A-LR_ssp585_r1i1p1f1_g025.nc``.
The scenario and member of a file come from its global attributes
``experiment_id`` / ``variant_label`` (CMIP6), else from a cmip6-ng style file name
``VAR_FREQ_MODEL_SCENARIO_MEMBER_GRID.nc``, else the file name is the scenario. A
file may also hold several scenarios along a ``scenario`` dimension (e.g. the
output of ``atmos baseline pattern-scaling predict``) and/or several members along ``member``.

:func:`open_scenarios` renames ``lat``/``lon`` to ``latitude``/``longitude``,
sorts latitude ascending, wraps longitude into [0, 360), decodes CF time with
cftime and turns it into integer years, and averages nothing: members are kept
(the pattern-scaling baseline averages them). :func:`read_driver_csv` reads a global
driver table (a ``year`` column, one column per scenario).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from atmos.errors import DataError, SourceError

__all__ = ["CMIP6NG_NAME", "open_scenarios", "read_driver_csv"]

CMIP6NG_NAME = re.compile(
    r"^(?P<var>[^_]+)_(?P<freq>[^_]+)_(?P<model>[^_]+)_(?P<scenario>[^_]+)_(?P<member>[^_]+)_(?P<grid>[^_.]+)\.nc4?$"
)
_RENAME = {"lat": "latitude", "lon": "longitude", "nav_lat": "latitude", "nav_lon": "longitude"}



def _discover(inputs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted([*p.glob("*.nc"), *p.glob("*.nc4")])
            if not found:
                raise SourceError(f"directory {str(p)!r} contains no .nc files; pass netCDF files or a folder of them.")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise SourceError(f"input {str(p)!r} does not exist; pass existing netCDF files or directories.")
    return files


def _open(path: Path) -> xr.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
            except (ValueError, TypeError):
                ds = xr.open_dataset(path, decode_times=False)
            return ds.load()
    except OSError as err:
        raise SourceError(f"cannot read {str(path)!r} as netCDF ({err}); pass netCDF files.") from err


def _to_years(ds: xr.Dataset, path: Path) -> xr.Dataset:
    if "time" not in ds.dims:
        raise DataError(f"{str(path)!r} has no 'time' dimension (dims {sorted(map(str, ds.dims))}); expected yearly fields.")
    t = ds["time"]
    if np.issubdtype(t.dtype, np.number):
        years = np.asarray(t.values)
        if not np.all(np.mod(years, 1) == 0):
            raise DataError(
                f"{str(path)!r}: numeric time values {years[:3]}... are not whole years and carry no CF units; "
                "store time as CF dates or integer years."
            )
        years = years.astype(np.int64)
    else:
        years = np.asarray(t.dt.year.values, dtype=np.int64)
    if np.unique(years).size != years.size:
        raise DataError(
            f"{str(path)!r} has {years.size} time steps in {np.unique(years).size} years; pattern scaling needs "
            "annual means: average per year first (e.g. cdo yearmonmean, or ds.groupby('time.year').mean())."
        )
    return ds.assign_coords(time=years)


def _canonical(ds: xr.Dataset, path: Path) -> xr.Dataset:
    ds = ds.rename({k: v for k, v in _RENAME.items() if k in ds.variables and v not in ds.variables})
    bounds = [k for k in ds.variables if str(k).endswith(("_bnds", "_bounds")) or k in ("bnds",)]
    ds = ds.drop_vars(bounds, errors="ignore")
    scalar = [k for k in ds.coords if ds[k].ndim == 0]
    ds = ds.drop_vars(scalar)
    ds = _to_years(ds, path)
    if "longitude" in ds.dims:
        lon = np.mod(ds["longitude"].values, 360.0)
        ds = ds.assign_coords(longitude=lon).sortby("longitude")
    if "latitude" in ds.dims:
        ds = ds.sortby("latitude")
    keep = [k for k, v in ds.data_vars.items() if "time" in v.dims and v.ndim > 1]
    return ds[keep]


def _identify(path: Path, ds: xr.Dataset) -> tuple[str, str]:
    scen, member = ds.attrs.get("experiment_id"), ds.attrs.get("variant_label")
    m = CMIP6NG_NAME.match(path.name)
    if not scen and m:
        scen = m["scenario"]
    if not member and m:
        member = m["member"]
    return str(scen or path.stem), str(member or "0")


def open_scenarios(
    inputs: Sequence[str | Path],
    scenarios: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
) -> dict[str, xr.Dataset]:
    """Open yearly netCDF fields as ``{scenario: Dataset(member, time, latitude, longitude)}``.

    Parameters
    ----------
    inputs : paths
        netCDF files and/or directories of them (``*.nc``).
    scenarios : list of str, optional
        Keep only these scenarios (in this order); each must be found.
    variables : list of str, optional
        Keep only these variables; each must be found in every kept scenario.

    Raises
    ------
    SourceError
        Missing paths or unreadable files.
    DataError
        A requested scenario or variable that is not there, non-annual data.
    """
    pieces: dict[str, dict[str, list[xr.Dataset]]] = {}
    for path in _discover(inputs):
        ds = _canonical(_open(path), path)
        if "scenario" in ds.dims:
            split = {str(s): ds.sel(scenario=s, drop=True).dropna("time", how="all") for s in ds["scenario"].values}
        else:
            scen, member = _identify(path, ds)
            if "member" not in ds.dims:
                ds = ds.expand_dims(member=[member])
            split = {scen: ds}
        for scen, part in split.items():
            if "member" not in part.dims:
                part = part.expand_dims(member=["0"])
            for mem in part["member"].values:
                pieces.setdefault(scen, {}).setdefault(str(mem), []).append(part.sel(member=[mem]))
    found = sorted(pieces)
    wanted = list(scenarios) if scenarios else found
    missing = [s for s in wanted if s not in pieces]
    if missing:
        raise DataError(
            f"scenario(s) {missing} not found in the inputs; found {found}. Scenario names come from the "
            "files' experiment_id attribute or cmip6-ng names VAR_FREQ_MODEL_SCENARIO_MEMBER_GRID.nc."
        )
    out: dict[str, xr.Dataset] = {}
    for scen in wanted:
        members = []
        for _, parts in sorted(pieces[scen].items()):
            members.append(xr.merge(parts, compat="override", join="outer", combine_attrs="drop_conflicts"))
        ds = xr.concat(members, dim="member", join="outer", combine_attrs="drop_conflicts")
        if variables:
            absent = [v for v in variables if v not in ds.data_vars]
            if absent:
                raise DataError(
                    f"variable(s) {absent} not found for scenario {scen!r} (it has {list(ds.data_vars)}); "
                    "pass variable names present in the files (atmos baseline: --var)."
                )
            ds = ds[list(variables)]
        out[scen] = ds
    return out


def read_driver_csv(path: str | Path, scenarios: Sequence[str] | None = None) -> dict[str, xr.DataArray]:
    """Read a global driver table: a ``year`` column and one column per scenario (blank = no value).

    Example (cumulative CO2 emissions in GtCO2)::

        year,historical,ssp126,ssp585
        1850,2.0,,
        ...
        2015,,1589.7,1589.7
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise SourceError(f"driver table {str(p)!r} does not exist; expected a CSV with columns year,SCENARIO,...")
    df = pd.read_csv(p, comment="#")
    if "year" not in df.columns:
        raise DataError(
            f"driver table {str(p)!r} has columns {list(df.columns)}; expected a 'year' column and one column per "
            "scenario (e.g. year,historical,ssp585)."
        )
    cols = [c for c in df.columns if c != "year"]
    wanted = list(scenarios) if scenarios else cols
    missing = [s for s in wanted if s not in cols]
    if missing:
        raise DataError(f"driver table {str(p)!r} has no column for scenario(s) {missing}; it has {cols}.")
    out = {}
    for s in wanted:
        col = df[["year", s]].dropna()
        out[s] = xr.DataArray(
            col[s].to_numpy(dtype=np.float64), dims=("time",),
            coords={"time": col["year"].to_numpy(dtype=np.int64)}, name=p.stem,
        )
    return out
