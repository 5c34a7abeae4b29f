"""``atmos baseline pattern-scaling fit|predict``: linear pattern scaling from netCDF files.

Input files are yearly fields, one file per (variable,) scenario and ensemble
member, e.g. the ETH cmip6-ng layout ``tas_ann_IPSL-CM6A-LR_ssp585_r1i1p1f1_g025.nc``.
The scenario and member of a file come from its global attributes
``experiment_id`` / ``variant_label`` (CMIP6), else from a cmip6-ng style file name
``VAR_FREQ_MODEL_SCENARIO_MEMBER_GRID.nc``, else the file name is the scenario. A
file may also hold several scenarios along a ``scenario`` dimension (e.g. the
output of ``predict``) and/or several members along ``member``.

Loading (:func:`open_scenarios`) renames ``lat``/``lon`` to ``latitude``/``longitude``,
sorts latitude ascending, wraps longitude into [0, 360), decodes CF time with
cftime and turns it into integer years, and averages nothing: members are kept
and averaged by the model.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError, SourceError

__all__ = ["add_parser", "open_scenarios", "read_driver_csv", "run"]

CMIP6NG_NAME = re.compile(
    r"^(?P<var>[^_]+)_(?P<freq>[^_]+)_(?P<model>[^_]+)_(?P<scenario>[^_]+)_(?P<member>[^_]+)_(?P<grid>[^_.]+)\.nc4?$"
)
_RENAME = {"lat": "latitude", "lon": "longitude", "nav_lat": "latitude", "nav_lon": "longitude"}


# --------------------------------------------------------------------------- loading


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
                    "pass --var with names present in the files."
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


def _driver_on(driver: dict[str, xr.DataArray], fields: dict[str, xr.Dataset]) -> dict[str, xr.DataArray]:
    """The driver of each scenario on that scenario's years (every year must be in the table)."""
    out = {}
    for scen, ds in fields.items():
        d = driver[scen]
        years = ds["time"].values
        absent = np.setdiff1d(years, d["time"].values)
        if absent.size:
            raise DataError(
                f"the driver table has no value for scenario {scen!r} in {absent.size} year(s) of the data "
                f"({absent[:5].tolist()}...); extend the table to years {years.min()}-{years.max()}."
            )
        out[scen] = d.sel(time=years)
    return out


# --------------------------------------------------------------------------- commands


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="fit/apply statistical climate-emulation baselines (pattern scaling)",
        description="Statistical climate-emulation baselines. See 'atmos baseline pattern-scaling -h'.",
    )
    models = p.add_subparsers(dest="model", metavar="MODEL")
    ps = models.add_parser(
        "pattern-scaling",
        help="linear pattern scaling: field(t, x) = a(x) + b(x) * GMST(t)",
        description=(
            "Linear pattern scaling (Lütjens et al.): every variable and grid cell is regressed on the "
            "area-weighted global-mean surface temperature (GMST) of the training scenarios (ensemble means); "
            "optionally a stage-1 regression maps a global driver (e.g. cumulative CO2 emissions) to GMST."
        ),
    )
    actions = ps.add_subparsers(dest="action", metavar="ACTION")

    fit = actions.add_parser(
        "fit",
        help="fit pattern-scaling coefficients and save them to netCDF",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Fit on yearly netCDF fields (one file per variable/scenario/member, e.g. cmip6-ng\n"
            "tas_ann_MODEL_SCENARIO_MEMBER_GRID.nc; scenario and member from experiment_id/variant_label\n"
            "or the file name). Members are averaged; the regressor is the true GMST (cell-area weighted)\n"
            "of --gmst-var. With --driver, a stage-1 regression GMST ~ driver is fitted too, so that\n"
            "'predict --driver' needs only the driver."
        ),
        epilog=(
            "example:\n  atmos baseline pattern-scaling fit data/cmip6-ipsl --train historical ssp585 "
            "--var tas -o coeffs.nc\n"
            "  atmos baseline pattern-scaling fit data/ --train historical ssp585 --var tas pr "
            "--driver cum_co2.csv -o coeffs.nc"
        ),
    )
    fit.add_argument("inputs", nargs="+", help="netCDF files and/or directories of them")
    fit.add_argument("--train", nargs="+", metavar="SCEN", help="training scenarios (default: all found)")
    fit.add_argument("--var", nargs="+", metavar="VAR", help="variables to emulate (default: all with time and space)")
    fit.add_argument("--gmst-var", default=None, metavar="VAR",
                     help="temperature variable whose global mean is the regressor (default: tas/2m_temperature)")
    fit.add_argument("--degree", type=int, default=1, help="polynomial degree in GMST (default 1: linear)")
    fit.add_argument("--driver", metavar="CSV",
                     help="stage-1 driver table: columns year,SCEN1,SCEN2,... (e.g. cumulative CO2 emissions)")
    fit.add_argument("-o", "--output", required=True, metavar="COEFFS.nc", help="coefficient file to write")
    fit.set_defaults(func=run)

    pr = actions.add_parser(
        "predict",
        help="emulate fields from saved coefficients",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Emulate fields from a coefficient file. The GMST comes from either --driver (a table year,SCEN,...;\n"
            "passed through stage 1 if the coefficients have one, else taken as GMST) or --gmst-from (the true\n"
            "GMST of existing fields: 'LPS with true GMST'). Writes one netCDF with a 'scenario' dimension."
        ),
        epilog=(
            "example:\n  atmos baseline pattern-scaling predict --coeffs coeffs.nc --gmst-from data/cmip6-ipsl "
            "--scenario ssp126 -o pred.nc"
        ),
    )
    pr.add_argument("--coeffs", required=True, metavar="COEFFS.nc", help="file written by 'fit'")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--driver", metavar="CSV", help="driver table: columns year,SCEN1,SCEN2,...")
    src.add_argument("--gmst-from", nargs="+", metavar="INPUT", help="netCDF files/dirs whose true GMST drives the pattern")
    pr.add_argument("--scenario", nargs="+", metavar="SCEN", help="scenarios to emulate (default: all in the source)")
    pr.add_argument("--gmst-var", default=None, metavar="VAR", help="temperature variable for --gmst-from (default: tas)")
    pr.add_argument("-o", "--output", required=True, metavar="PRED.nc", help="netCDF file to write")
    pr.set_defaults(func=run)
    ps.set_defaults(func=lambda args: _usage(ps))
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    if args.action == "fit":
        return _fit(args)
    if args.action == "predict":
        return _predict(args)
    raise ConfigError(f"unknown action {args.action!r}; expected 'fit' or 'predict'.")  # pragma: no cover


def _fit(args: argparse.Namespace) -> int:
    from atmos.baselines import GlobalDriverRegression, PatternScaling, gmst

    fields = open_scenarios(args.inputs, args.train, None)
    first = next(iter(fields.values()))
    variables = list(args.var) if args.var else list(first.data_vars)
    gvar = args.gmst_var
    for scen, ds in fields.items():
        absent = [v for v in variables if v not in ds.data_vars]
        if absent:
            raise DataError(f"variable(s) {absent} not found for scenario {scen!r} (it has {list(ds.data_vars)}).")
    true_gmst = {s: gmst(ds, gvar) for s, ds in fields.items()}
    targets = {s: ds[variables] for s, ds in fields.items()}
    if args.driver:
        driver = _driver_on(read_driver_csv(args.driver, list(fields)), fields)
        model = PatternScaling(degree=args.degree, stage1=GlobalDriverRegression(), gmst_variable=gvar)
        model.fit(driver, targets, gmst=true_gmst)
    else:
        model = PatternScaling(degree=args.degree, gmst_variable=gvar).fit(true_gmst, targets)
    model.save(args.output)
    n = model.coefficients.attrs["training_samples"]
    print(f"fitted {variables} on {list(fields)} ({n} ensemble-mean years), degree {args.degree}"
          + (f", stage 1 on {Path(args.driver).name}: {model.stage1!r}" if args.driver else "")
          + f"; wrote {args.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from atmos.baselines import PatternScaling, gmst

    model = PatternScaling.load(args.coeffs)
    if args.driver:
        driver = read_driver_csv(args.driver, args.scenario)
        if model.stage1 is None:
            print("note: the coefficients have no stage 1; the driver table is taken as GMST")
        preds = model.predict(driver)
    else:
        fields = open_scenarios(args.gmst_from, args.scenario, None)
        preds = model.predict_from_gmst({s: gmst(ds, args.gmst_var) for s, ds in fields.items()})
    names = list(preds)
    out = xr.concat([preds[s] for s in names], dim=xr.Variable("scenario", names), join="outer")
    out.attrs.update({"coefficients": str(args.coeffs),
                      "gmst_source": f"driver table {args.driver}" if args.driver else "true GMST of --gmst-from"})
    from atmos.io.write import write_netcdf

    write_netcdf(out, args.output, what="atmos baseline")
    print(f"emulated {model.variables} for {names}; wrote {args.output}")
    return 0
