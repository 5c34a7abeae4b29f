"""``atmos baseline pattern-scaling fit|predict``: linear pattern scaling from netCDF files.

The files (yearly CMIP6-style fields, one per variable, scenario and member) are read by
:func:`atmos.io.cmip6.open_scenarios`, the driver tables by
:func:`atmos.io.cmip6.read_driver_csv`; see :mod:`atmos.io.cmip6` for the layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from atmos.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["add_parser", "run"]


def _driver_on(driver: dict[str, xr.DataArray], fields: dict[str, xr.Dataset]) -> dict[str, xr.DataArray]:
    """The driver of each scenario on that scenario's years (every year must be in the table)."""
    import numpy as np

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
    from atmos.io.cmip6 import open_scenarios, read_driver_csv

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
    import xarray as xr

    from atmos.baselines import PatternScaling, gmst
    from atmos.io.cmip6 import open_scenarios, read_driver_csv

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
