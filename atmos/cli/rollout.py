"""``atmos rollout``: run a forecast from a checkpoint (default: the embedded sample model).

With no ``--model`` the small sample model shipped inside atmos is used (a ViT trained
on SPEEDY-world, a simulated atmosphere — not observations), and with no ``--data`` its
embedded initial conditions (SPEEDY-world around 2020-01-01), so the first command
works offline on a fresh install::

    atmos rollout --init 2020-01-01 --days 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atmos.errors import ConfigError

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  atmos rollout --init 2020-01-01 --days 10                        # embedded sample model and data
  atmos rollout --model runs/vit_speedy --data speedy-world-val --init 2020-01-01/2020-01-05 --days 5
  atmos rollout --init 2020-01-01 --days 10 --members 8 --perturb 0.05 --perturb-length-scale 500
  atmos rollout --init 2020-01-03 --days 5 --members 8 --perturbation bred --perturbation-scale 0.1
  atmos rollout --init 2020-01-03 --days 5 --members 8 --perturbation lagged --perturbation-option lag=12h
  atmos rollout --model runs/unet_gru_speedy --data speedy-world-val --init 2020-01-01 --days 10 --keep-native
  atmos rollout --init 2020-01-01 --days 10 --resume               # complete an interrupted run
  atmos rollout --model runs/vit_speedy --data speedy-world-val --init 2020-01-01 --days 5 --decoder runs/tp_decoder

--init takes a date (2020-01-01), a datetime (2020-01-01T06), a comma-separated list, or a
range START/END (daily) or START/END/12h. The output is a Zarr store in the WeatherBench2
forecast layout (time x prediction_timedelta x [realization] x [level] x latitude x longitude),
written lead by lead; an interrupted store opens and says how far it got
(attribute atmos_completed_steps); --resume completes it. The ensemble dim is 'realization',
WeatherBench2's default (--ensemble-dim member for the name atmos wrote before).

Ensembles (--members N): --perturbation METHOD picks how the members differ (member 0 is the
unperturbed control, or for lagged the forecast from --init itself):
  gaussian          Gaussian noise in normalized space (--perturb S is its shorthand;
                    --perturb-length-scale KM smooths it)
  spherical         isotropic spherical-harmonic Gaussian noise, lat-lon or HEALPix
                    (options length_scale_km=1000, decay, lmax)
  bred              bred vectors: cycles of the model itself before --init, the member
                    differences rescaled to RMS --perturbation-scale (options cycles=4, cycle=12h,
                    paired=false)
  lagged            member j starts at init - j x lag (option lag, default the model step),
                    all valid at the same times; no scale
  temporal-dropout  Monte-Carlo dropout of older input history steps, rate --perturbation-scale
                    (models with history >= 2; options fill=nearest|zero, every_step=true)

--decoder PATH (repeatable) attaches a lightweight decoder (a run of `atmos train` with
`task: decoder`) that diagnoses new variables, e.g. total_precipitation_6hr, from the
backbone's latent at every step. The prognostic variables stay exactly as without it;
the new variables have no level dim and are NaN at lead 0. A decoder only runs on the
backbone it was trained on (its weights hash is checked).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="run a forecast (default: the embedded sample model on SPEEDY-world)",
        description=(
            "Roll an emulator out autoregressively from initial conditions and stream the forecast to a "
            "CF-compliant Zarr store in the WeatherBench2 forecast layout. Without --model, uses the small "
            "sample model shipped with atmos (trained on SPEEDY-world, a simulated atmosphere, not "
            "observations) and its embedded initial conditions."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="checkpoint or run folder from atmos train (default: the sample model)",
    )
    p.add_argument(
        "--data",
        metavar="NAME|PATH|URL",
        help="initial conditions: catalog entry, path or URL (default with the sample model: its embedded data)",
    )
    p.add_argument(
        "--init", metavar="TIME", help="initial time(s): date, datetime, list or range (see below)"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, help="forecast length in days (default 10)")
    length.add_argument("--steps", type=int, help="forecast length in output steps")
    p.add_argument(
        "--step",
        metavar="INTERVAL",
        help="output interval, a multiple of the model step (default: the model's)",
    )
    p.add_argument("--members", type=int, help="ensemble members (adds the ensemble dimension)")
    p.add_argument(
        "--perturb",
        type=float,
        metavar="SIGMA",
        help="std of the Gaussian initial perturbation in normalized units (with --members; member 0 is "
        "the unperturbed control)",
    )
    p.add_argument(
        "--perturb-length-scale",
        type=float,
        metavar="KM",
        help="spatial correlation length of the perturbation (default: uncorrelated)",
    )
    p.add_argument(
        "--perturbation",
        metavar="METHOD",
        help="ensemble perturbation method: gaussian, spherical, bred, lagged, temporal-dropout (see below)",
    )
    p.add_argument(
        "--perturbation-scale",
        type=float,
        metavar="S",
        help="the method's scale: noise std (gaussian, spherical), bred-vector RMS, dropout rate",
    )
    p.add_argument(
        "--perturbation-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="an option of the method, e.g. cycles=2, lag=12h, length_scale_km=1000; repeatable",
    )
    p.add_argument(
        "--ensemble-dim",
        choices=["realization", "member"],
        default="realization",
        help="name of the ensemble dimension (default realization, what WeatherBench2 reads)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default 0)")
    p.add_argument("--out", metavar="PATH.zarr", help="output store (default ./forecast_<model>_<init>.zarr)")
    p.add_argument("--resume", action="store_true", help="complete an interrupted store at --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument(
        "--keep-native",
        nargs="?",
        const="",
        default=None,
        metavar="PATH.zarr",
        help="also write the forecast on the model's native grid (HEALPix models; default path: "
        "<out>_native.zarr)",
    )
    p.add_argument(
        "--forcings",
        choices=["auto", "astronomy", "data"],
        default="auto",
        help="forcings at future times: computed (auto/astronomy) or read from --data (uses future data)",
    )
    p.add_argument(
        "--decoder",
        action="append",
        default=None,
        metavar="PATH",
        help="lightweight decoder checkpoint (atmos train, task: decoder) adding variables diagnosed from the "
        "model's latent, e.g. total_precipitation_6hr; repeatable; must be trained on this --model",
    )
    p.add_argument(
        "--assume-units",
        action="append",
        default=None,
        metavar="VAR=UNITS",
        help="declare the units of a data variable whose units attribute is missing or wrong (e.g. t2m=degC, "
        "z=m for geopotential height); converted to canonical units; repeatable",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--information", type=float, metavar="FRACTION",
        help="lossy compression of --out: bit-round each variable to keep this fraction of its real information "
        "(0 < FRACTION <= 1, e.g. 0.99; see `atmos compress`); default lossless",
    )
    p.set_defaults(func=run)


def _lead_summary(ds) -> str:
    import pandas as pd

    leads = pd.to_timedelta(ds["prediction_timedelta"].values)
    n = len(leads)
    if n == 1:
        return "1 lead (0 h)"
    step = leads[1] - leads[0]
    return f"{n} leads, 0 .. {leads[-1] / pd.Timedelta('1D'):g} days every {step / pd.Timedelta('1h'):g} h"


def run(args: argparse.Namespace) -> int:
    from atmos.io.compression import check_information
    from atmos.rollout.api import default_output_path, parse_init, rollout
    from atmos.rollout.forecaster import Forecaster
    from atmos.rollout.sample import SAMPLE_DEFAULT_INIT, SAMPLE_NOTE, sample_data_path

    information = check_information(args.information)  # before the model is loaded

    fc = Forecaster.from_checkpoint(args.model, device=args.device, decoders=args.decoder)
    is_sample = args.model is None
    data = args.data
    data_label = data
    if data is None:
        if not is_sample:
            raise ConfigError(
                f"--data is required with --model {args.model!r}: a catalog entry, path or URL holding the initial "
                "conditions (e.g. --data speedy-world-val)."
            )
        data = sample_data_path()
        data_label = (
            f"embedded sample initial conditions ({data.name}: SPEEDY-world around 2020-01-01, simulated)"
        )
    init = args.init
    if init is None:
        if args.data is not None:
            raise ConfigError("--init is required with --data; e.g. --init 2020-01-01.")
        init = SAMPLE_DEFAULT_INIT
    inits = parse_init(init)
    days, steps = args.days, args.steps
    if days is None and steps is None:
        days = 10.0
    members = args.members
    perturb = args.perturb
    _check_ensemble_args(members, perturb, args.perturbation, args.perturbation_scale, stochastic=fc.noise_channels > 0)
    out = Path(args.out) if args.out else default_output_path(fc.name, inits)
    native = None
    if args.keep_native is not None:
        native = Path(args.keep_native) if args.keep_native else out.with_name(out.stem + "_native.zarr")

    params = fc.info.get("atmos_model_parameters")
    what = f"{fc.name} ({fc.info.get('atmos_model_type')}, {params:,} parameters, step {_hours(fc.step)})"
    if is_sample:
        print(f"model: sample model {what}, {SAMPLE_NOTE}.")
    else:
        print(f"model: {what} from {fc.info.get('atmos_checkpoint')}")
    for prov in fc.decoder_provenance:
        print(f"decoder: {', '.join(prov['variables'])} from {prov['checkpoint']}")
    print(f"initial conditions: {data_label}")
    if args.resume and out.exists():
        print(f"resuming {out}")
    ds = rollout(
        fc,
        data,
        inits,
        days,
        steps=steps,
        step=args.step,
        members=members,
        perturb=perturb or 0.0,
        perturb_length_scale=args.perturb_length_scale,
        perturbation=args.perturbation,
        perturbation_scale=args.perturbation_scale,
        perturbation_options=args.perturbation_option,
        ensemble_dim=args.ensemble_dim,
        seed=args.seed,
        out=out,
        resume=args.resume,
        overwrite=args.overwrite,
        native_out=native,
        forcings=args.forcings,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
        assume_units=_parse_units(args.assume_units),
        information=information,
    )
    n_init = ds.sizes["time"]
    dim = next((d for d in ("realization", "member") if d in ds.dims), None)
    ens = f" x {ds.sizes[dim]} members ({dim!r} dim; {ds.attrs.get('atmos_perturbation')})" if dim else ""
    print(f"forcings: {_forcing_summary(ds)}")
    print(
        f"wrote {out.resolve()}: {n_init} initial time(s) x {_lead_summary(ds)}{ens}; variables "
        f"{', '.join(map(str, ds.data_vars))}"
    )
    if native is not None:
        print(f"native-grid forecast: {native.resolve()}")
    return 0


def _check_ensemble_args(members: int | None, perturb: float | None, method: str | None,
                         scale: float | None, stochastic: bool = False) -> None:
    """Members that would all be equal, or a perturbation without members: a ConfigError naming the fix.

    A stochastic model (noise inputs, ``data.noise_channels``) draws its members from its own noise:
    ``--members N`` alone is an ensemble."""
    ensemble = members is not None and members > 1
    if ensemble and perturb is None and method is None and not stochastic:
        raise ConfigError(
            f"--members {members} without --perturb or --perturbation gives {members} identical forecasts; pass "
            "--perturb SIGMA (Gaussian, e.g. 0.05, in units of each variable's std) or --perturbation METHOD "
            "(gaussian, spherical, bred, lagged, temporal-dropout) with --perturbation-scale S."
        )
    if ensemble and method is not None and method != "lagged" and scale is None and perturb is None:
        raise ConfigError(
            f"--perturbation {method} needs --perturbation-scale S (the noise std, bred-vector RMS or dropout rate); "
            "only --perturbation lagged has no scale."
        )
    if (perturb or scale or method == "lagged") and not ensemble:
        flag = "--perturb" if perturb else "--perturbation"
        raise ConfigError(f"{flag} needs an ensemble: pass --members N with N >= 2.")


def _hours(td) -> str:
    import pandas as pd

    return f"{pd.Timedelta(td) / pd.Timedelta('1h'):g} h"


def _forcing_summary(ds) -> str:
    import json

    try:
        notes = json.loads(ds.attrs.get("atmos_forcings", "{}"))
    except ValueError:
        return str(ds.attrs.get("atmos_forcings"))
    if not notes:
        return "none"
    return "; ".join(f"{k}: {v}" for k, v in notes.items())


def _parse_units(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        var, sep, units = item.partition("=")
        if not sep or not var.strip() or not units.strip():
            raise ConfigError(f"--assume-units takes VAR=UNITS (e.g. t2m=degC), got {item!r}.")
        out[var.strip()] = units.strip()
    return out
