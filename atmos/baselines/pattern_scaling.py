"""Linear pattern scaling (LPS): the climate-emulation baseline of Lütjens et al.

The model has two stages (Lütjens et al., "The impact of internal variability on
benchmarking deep learning climate emulators"; the classic pattern scaling of
Santer et al. 1990 and Mitchell 2003):

1. **Global driver -> GMST** (:class:`GlobalDriverRegression`, optional): a
   polynomial (by default linear) least-squares regression of the global-mean
   surface temperature on any 1-D global driver, e.g. cumulative CO2 emissions,
   effective radiative forcing, or the GMST of a simple climate model.
2. **GMST -> fields** (:class:`PatternScaling`): for every grid cell ``x`` and
   every variable independently,

   .. math:: f(t, x) = a_0(x) + a_1(x)\\,T(t) + \\dots + a_d(x)\\,T(t)^d,

   fitted by least squares over all training scenarios and years at once, on
   ensemble-mean targets. Every variable (``tas``, ``pr``, ``dtr``, ...) is
   regressed on the GMST of the temperature variable, never on its own global
   mean. The pattern is trained with the *true* GMST (computed from the training
   fields); at prediction time the GMST comes from stage 1 (or is given).

Conventions
-----------
* Sample dimensions are ``scenario`` (optional) and ``time``; a ``member``
  dimension is averaged away (NaN-skipping, so scenarios with different numbers
  of members can share one array) before anything else. Every other dimension
  (``latitude``/``longitude``, HEALPix ``cell``, ``level``, ...) is a "point" with
  its own coefficients.
* Scenarios of different lengths (``historical`` 1850-2014, ``ssp585``
  2015-2100) are best passed as mappings ``{scenario: dataset}`` (and
  ``{scenario: driver}``); one array NaN-padded along ``time`` with a ``scenario``
  dimension works too. Samples where every field value is missing are padding
  and are skipped. The driver must have a finite value at every other sample
  (it may cover more years than the fields; those are ignored).
* The GMST used for training is the area-weighted global mean with
  :func:`atmos.io.coords.area_weights` (exact normalized cell areas on lat-lon
  grids, equal areas on HEALPix) of the ensemble-mean temperature field. The
  ClimateBench *metrics* use ``cos(latitude)`` instead (see
  :mod:`atmos.metrics.climatebench`); on equiangular grids without pole points
  the two weightings are identical up to normalization.
* With degree ``d`` and the true GMST as regressor, least squares is linear in
  the targets, so the area-weighted global mean of the fitted coefficients is
  the regression of the GMST on itself: ``(0, 1, 0, ...)``. The global mean of a
  prediction therefore equals the GMST that drives it.

The fit is vectorized: one least-squares solve with all points as right-hand
sides (and batched normal equations for the few points that have missing
values), so it costs about as much as two matrix products.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError, GridError
from atmos.io.coords import global_mean
from atmos.io.write import write_netcdf

__all__ = [
    "GlobalDriverRegression",
    "PatternScaling",
    "ensemble_mean",
    "gmst",
]

SAMPLE_DIMS = ("scenario", "time")
MEMBER_DIM = "member"
DEGREE_DIM = "degree"
STAGE1_VAR = "stage1_coef"
STAGE1_DIM = "stage1_degree"
TEMPERATURE_NAMES = ("tas", "2m_temperature", "t2m", "temperature_2m")

Fields = xr.Dataset | xr.DataArray | Mapping[Hashable, xr.Dataset | xr.DataArray]
Driver = xr.DataArray | Mapping[Hashable, xr.DataArray]


# --------------------------------------------------------------------------- helpers


def ensemble_mean(x: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Mean over the ``member`` dimension (NaN-skipping) if there is one, else ``x``."""
    if MEMBER_DIM not in x.dims:
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN padding -> NaN, silently
        return x.mean(MEMBER_DIM, skipna=True, keep_attrs=True)


def _is_mapping(x: Any) -> bool:
    return isinstance(x, Mapping) and not isinstance(x, xr.Dataset | xr.DataArray)


def _span(v: np.ndarray) -> str:
    v = np.asarray(v).ravel()
    if v.size == 0:
        return "[]"
    return f"[{v[0]}..{v[-1]}]" if v.size > 1 else f"[{v[0]}]"


def _fmt(v: Any) -> str:
    return str(v.item() if hasattr(v, "item") else v)


def _blocks(obj: Any, what: str) -> dict[str | None, Any]:
    """Split into per-scenario pieces: ``{scenario: obj}``, or ``{None: obj}`` without scenarios."""
    if _is_mapping(obj):
        if not obj:
            raise DataError(f"empty mapping of {what}: expected {{scenario: data, ...}} with at least one entry.")
        out = {}
        for name, item in obj.items():
            if not isinstance(item, xr.Dataset | xr.DataArray):
                raise DataError(
                    f"{what}[{name!r}] is a {type(item).__name__}; expected an xarray Dataset or DataArray "
                    "with a 'time' dimension."
                )
            if "scenario" in item.dims:
                raise DataError(
                    f"{what}[{name!r}] already has a 'scenario' dimension; pass either a mapping "
                    "{scenario: data} or one array with a 'scenario' dimension, not both."
                )
            out[str(name)] = item
        return out
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise DataError(
            f"{what} is a {type(obj).__name__}; expected an xarray Dataset/DataArray or a mapping "
            "{scenario: data}."
        )
    if "scenario" in obj.dims:
        names = obj["scenario"].values if "scenario" in obj.coords else np.arange(obj.sizes["scenario"])
        return {str(s): obj.isel(scenario=i, drop=True) for i, s in enumerate(names)}
    return {None: obj}


def _prep_fields(ds: xr.Dataset | xr.DataArray, label: str | None) -> xr.Dataset:
    where = "fields" if label is None else f"fields[{label!r}]"
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name if ds.name is not None else "field")
    if "time" not in ds.dims:
        raise DataError(
            f"{where} have no 'time' dimension (dims {sorted(map(str, ds.dims))}); pattern scaling "
            "regresses over years: rename the time dimension to 'time'."
        )
    if not ds.data_vars:
        raise DataError(f"{where} has no data variables; pass the variables to emulate (e.g. ds[['tas']]).")
    for name, var in ds.data_vars.items():
        if "time" not in var.dims:
            raise DataError(
                f"variable {name!r} has no 'time' dimension (dims {var.dims}); drop static variables "
                "before fitting (e.g. ds.drop_vars(...))."
            )
        if not np.issubdtype(var.dtype, np.number):
            raise DataError(f"variable {name!r} has non-numeric dtype {var.dtype}; expected numbers.")
        if name == STAGE1_VAR:
            raise DataError(f"a field may not be called {STAGE1_VAR!r} (reserved); rename it.")
    return ensemble_mean(ds)


def _prep_driver(d: Any, what: str) -> xr.DataArray:
    if isinstance(d, xr.Dataset):
        if len(d.data_vars) != 1:
            raise DataError(
                f"{what} is a Dataset with variables {list(d.data_vars)}; expected one DataArray "
                "(a 1-D series per scenario). Pick the variable, e.g. ds['co2_cumulative']."
            )
        d = next(iter(d.data_vars.values()))
    d = ensemble_mean(d)
    if d.dims != ("time",):
        raise DataError(
            f"{what} has dims {d.dims}; expected ('time',) per scenario, i.e. ('time',) or ('scenario', 'time') "
            "overall (plus an optional 'member' dimension, which is averaged). A global driver is one number "
            "per scenario and year: take the global mean first (atmos.baselines.gmst)."
        )
    if not np.issubdtype(d.dtype, np.number):
        raise DataError(f"{what} has non-numeric dtype {d.dtype}; expected numbers.")
    return d.astype(np.float64)


def _pair(driver: dict, fields: dict, what: str) -> None:
    if set(driver) == set(fields):
        return
    if None in fields or None in driver:
        side, other = ("the fields", what) if None in fields else (what, "the fields")
        raise DataError(
            f"{side}: no 'scenario' dimension, but {other} have scenarios "
            f"{sorted(k for k in {**driver, **fields} if k)}: give both the same scenarios (a 'scenario' "
            "dimension, or {scenario: ...} mappings)."
        )
    raise DataError(
        f"{what} scenarios {sorted(driver)} do not match the fields' scenarios {sorted(fields)}; "
        "pass the same scenario names on both sides."
    )


def _check_same_points(blocks: dict[str | None, xr.Dataset]) -> None:
    """Scenario pieces must share their non-sample coordinates (same grid)."""
    names = list(blocks)
    ref = blocks[names[0]]
    for name in names[1:]:
        obj = blocks[name]
        for dim in set(ref.dims) & set(obj.dims):
            if dim in (*SAMPLE_DIMS, MEMBER_DIM) or dim not in ref.coords or dim not in obj.coords:
                continue
            a, b = np.asarray(ref[dim].values), np.asarray(obj[dim].values)
            if a.shape != b.shape or not np.array_equal(a, b):
                raise GridError(
                    f"fields[{name!r}] has a different {dim!r} coordinate than fields[{names[0]!r}] "
                    f"({b.size} values {_span(b)} vs {a.size} values {_span(a)}): all scenarios must be "
                    "on the same grid. Regrid them first (atmos.io.regrid)."
                )
        missing = set(ref.data_vars) ^ set(obj.data_vars)
        if missing:
            raise DataError(
                f"fields[{name!r}] and fields[{names[0]!r}] have different variables ({sorted(map(str, missing))} "
                "in only one of them); give every scenario the same variables."
            )


def _driver_at(d: xr.DataArray, times: np.ndarray, label: str | None, what: str) -> np.ndarray:
    """Driver values at the given times (the samples that have field data); loud on gaps and NaN."""
    dt = np.asarray(d["time"].values) if "time" in d.coords else np.arange(d.sizes["time"])
    scen = "" if label is None else f"[{label!r}]"
    if dt.shape == times.shape and np.array_equal(dt, times):
        vals = d.values
    else:
        pos = {v: i for i, v in enumerate(dt.tolist())}
        missing = [t for t in times.tolist() if t not in pos]
        if missing:
            raise DataError(
                f"{what}{scen} 'time' coordinate {_span(dt)} ({dt.size} values) lacks {len(missing)} of the "
                f"fields' years with data {_span(times)} (first missing: {_fmt(np.asarray(missing[:1])[0])}). "
                f"Give the driver a value for every year of the fields, e.g. {what}.sel(time=fields.time), or "
                f"select the common years with xr.align({what}, fields, join='inner')."
            )
        vals = d.values[[pos[t] for t in times.tolist()]]
    bad = ~np.isfinite(vals)
    if bad.any():
        raise DataError(
            f"{what}{scen} has {int(bad.sum())} NaN/inf value(s) at years where the fields have data, first at "
            f"time={_fmt(times[np.argmax(bad)])}. Fill them (e.g. {what}.interpolate_na('time')) or drop those "
            "years from both driver and fields."
        )
    return vals


def _basis(x: np.ndarray, degree: int, scale: float = 1.0) -> np.ndarray:
    """Vandermonde matrix ``[(x/scale)**0, ..., (x/scale)**degree]``, shape [n, degree+1]."""
    return np.vander(np.asarray(x, dtype=np.float64) / scale, degree + 1, increasing=True)


def _lstsq_columns(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Polynomial least squares of every column of ``y`` on ``x``.

    Complete columns share one thin QR factorization of the (column-scaled) Vandermonde
    matrix: ``c = R^-1 Q^T y`` costs one [p, n] x [n, m] product. Columns with missing
    values solve their own masked normal equations (batched).

    Parameters
    ----------
    x : ndarray, shape [n]
        Regressor (finite, at least ``degree + 1`` distinct values).
    y : ndarray, shape [n, m]
        Targets; NaN marks a missing value of one column.

    Returns
    -------
    ndarray, shape [degree + 1, m]
        Monomial coefficients ``c`` with ``y ~ sum_k c[k] x**k``; NaN for a column
        with fewer than ``degree + 1`` finite values.
    """
    m = y.shape[1]
    p = degree + 1
    scale = float(np.max(np.abs(x))) or 1.0  # column scaling: conditioning of x**k
    X = _basis(x, degree, scale)
    unscale = scale ** -np.arange(p, dtype=np.float64)
    q, r = np.linalg.qr(X)
    qty = q.T @ y  # [p, m]; NaN/inf in a column of y makes that column non-finite
    full = np.isfinite(qty).all(axis=0)
    coef = np.full((p, m), np.nan)
    coef[:, full] = np.linalg.solve(r, qty[:, full])
    part = np.nonzero(~full)[0]
    if part.size == 0:
        return coef * unscale[:, None]
    finite = np.isfinite(y[:, part])
    mask = finite.astype(np.float64)  # [n, m']
    yz = np.where(finite, y[:, part], 0.0)
    gram = np.einsum("nm,nk,nl->mkl", mask, X, X)  # [m', p, p]
    rhs = np.einsum("nm,nk->mk", yz, X)  # [m', p]
    ok = mask.sum(axis=0) >= p
    if ok.any():
        g, rr = gram[ok], rhs[ok]
        good = np.linalg.matrix_rank(g) == p
        sol = np.full((g.shape[0], p), np.nan)
        if good.any():
            sol[good] = np.linalg.solve(g[good], rr[good][..., None])[..., 0]
        coef[:, part[ok]] = sol.T
    return coef * unscale[:, None]


def _check_regressor(x: np.ndarray, degree: int, what: str) -> None:
    distinct = np.unique(x).size
    if distinct < degree + 1:
        raise DataError(
            f"{what} takes only {distinct} distinct value(s) over the training samples; a degree-{degree} "
            f"fit needs at least {degree + 1}. Use more years/scenarios or a lower degree."
        )


def _check_degree(degree: Any) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or not 1 <= int(degree) <= 5:
        raise ConfigError(f"degree={degree!r}: expected an integer from 1 to 5 (1 = linear pattern scaling).")
    return int(degree)


def _rows(var: xr.DataArray) -> np.ndarray:
    """[time, points] float64 view/copy of a per-scenario variable."""
    rest = [d for d in var.dims if d != "time"]
    arr = var.transpose("time", *rest).values
    return np.asarray(arr, dtype=np.float64).reshape(var.sizes["time"], -1)


class _Samples:
    """Training samples gathered from per-scenario blocks without NaN padding."""

    def __init__(self, fields: Fields) -> None:
        raw = _blocks(fields, "fields")
        self.blocks = {k: _prep_fields(v, k) for k, v in raw.items()}
        _check_same_points(self.blocks)
        self.labels = list(self.blocks)
        first = self.blocks[self.labels[0]]
        self.variables = [str(v) for v in first.data_vars]
        self.rows: dict[str | None, dict[str, np.ndarray]] = {}
        self.times: dict[str | None, np.ndarray] = {}
        for k, ds in self.blocks.items():
            rows = {v: _rows(ds[v]) for v in self.variables}
            has = np.zeros(ds.sizes["time"], dtype=bool)
            for y in rows.values():  # a sample has data if any value is finite (cheap: check 1 column first)
                has |= np.isfinite(y[:, 0])
                unsure = np.nonzero(~has)[0]
                if unsure.size:
                    has[unsure] = np.isfinite(y[unsure]).any(axis=1)
            self.rows[k] = {v: y[has] if not has.all() else y for v, y in rows.items()}
            t = np.asarray(ds["time"].values) if "time" in ds.coords else np.arange(ds.sizes["time"])
            self.times[k] = t[has]
        self.n = sum(t.size for t in self.times.values())
        if self.n == 0:
            raise DataError("every field value is NaN: nothing to fit.")

    def series(self, driver: Driver, what: str) -> np.ndarray:
        """A driver's values at the samples, concatenated in block order, shape [n]."""
        blocks = _blocks(driver, what)
        _pair(blocks, self.blocks, what)
        return np.concatenate(
            [_driver_at(_prep_driver(blocks[k], what), self.times[k], k, what) for k in self.labels]
        )

    def matrix(self, var: str) -> np.ndarray:
        """All samples of one variable, shape [n, points]."""
        parts = [self.rows[k][var] for k in self.labels]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def template(self, var: str) -> xr.DataArray:
        return self.blocks[self.labels[0]][var].isel(time=0, drop=True)


def gmst(fields: Fields, variable: str | None = None) -> xr.DataArray | dict[str, xr.DataArray]:
    """Global-mean surface temperature of (ensemble-mean) fields, area-weighted.

    Parameters
    ----------
    fields : Dataset, DataArray or mapping {scenario: Dataset}
        Fields with a recognisable grid (``latitude``/``longitude`` or HEALPix ``cell``)
        and dims ``(scenario?, member?, time, *spatial)``.
    variable : str, optional
        The temperature variable; default: the first of ``tas``, ``2m_temperature``,
        ``t2m``, ``temperature_2m`` present (a DataArray is used as is).

    Returns
    -------
    DataArray, dims ``(scenario?, time)`` (a dict {scenario: DataArray} for a mapping)
        Weighted with the normalized cell areas of :func:`atmos.io.coords.area_weights`
        (not ``cos(lat)``); NaN cells are skipped; all-NaN (padding) samples give NaN.
    """
    if _is_mapping(fields):
        return {str(k): gmst(v, variable) for k, v in fields.items()}
    if isinstance(fields, xr.DataArray):
        da = fields
    elif isinstance(fields, xr.Dataset):
        da = fields[_temperature_name(fields, variable)]
    else:
        raise DataError(f"fields is a {type(fields).__name__}; expected an xarray Dataset/DataArray or a mapping.")
    da = ensemble_mean(da)
    out = global_mean(da)
    other = [d for d in out.dims if d not in SAMPLE_DIMS]
    if other:
        raise DataError(
            f"the global mean of {da.name!r} still has dims {other}; expected only ('scenario',) 'time'. "
            "Select one level first (e.g. .sel(level=1000))."
        )
    out.name = "gmst"
    out.attrs = {"long_name": "global-mean surface temperature", "weights": "cell area",
                 **({"units": da.attrs["units"]} if "units" in da.attrs else {})}
    return out.transpose(*[d for d in SAMPLE_DIMS if d in out.dims])


_gmst_of = gmst  # PatternScaling.fit has an argument named gmst


def _temperature_name(ds: xr.Dataset, variable: str | None) -> str:
    if variable is not None:
        if variable not in ds.data_vars:
            raise DataError(
                f"temperature variable {variable!r} is not in the fields (variables: {list(ds.data_vars)}); "
                "pass gmst_variable= the name of the near-surface temperature."
            )
        return variable
    for name in TEMPERATURE_NAMES:
        if name in ds.data_vars:
            return name
    raise DataError(
        f"no temperature variable among the fields {list(ds.data_vars)}: expected one of "
        f"{list(TEMPERATURE_NAMES)}. Pass gmst_variable='NAME' (the GMST regressor is its global mean)."
    )


def _as_series(driver: Driver, what: str = "driver") -> xr.DataArray:
    """A driver for prediction: one DataArray, dims (scenario?, time), float64, finite."""
    if isinstance(driver, xr.Dataset):
        driver = _prep_driver(driver, what)
    if not isinstance(driver, xr.DataArray):
        raise DataError(
            f"{what} is a {type(driver).__name__}; expected an xarray DataArray with dims ('time',) or "
            "('scenario', 'time'), or a mapping {scenario: DataArray}."
        )
    driver = ensemble_mean(driver)
    if "time" not in driver.dims or any(d not in SAMPLE_DIMS for d in driver.dims):
        raise DataError(
            f"{what} has dims {driver.dims}; expected ('time',) or ('scenario', 'time') (plus an optional "
            "'member' dimension, which is averaged)."
        )
    if not np.issubdtype(driver.dtype, np.number):
        raise DataError(f"{what} has non-numeric dtype {driver.dtype}; expected numbers.")
    driver = driver.transpose(*[d for d in SAMPLE_DIMS if d in driver.dims]).astype(np.float64)
    bad = ~np.isfinite(driver.values)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), driver.shape)
        where = ", ".join(
            f"{dim}={_fmt(driver[dim].values[i]) if dim in driver.coords else i}"
            for dim, i in zip(driver.dims, idx, strict=True)
        )
        raise DataError(
            f"{what} has {int(bad.sum())} NaN/inf value(s), first at {where}. Fill them (e.g. "
            f"{what}.interpolate_na('time')) or drop those years; for scenarios of different lengths pass a "
            "mapping {scenario: driver} instead of a NaN-padded array."
        )
    return driver


# --------------------------------------------------------------------------- stage 1


class GlobalDriverRegression:
    """Stage 1: polynomial least-squares regression of GMST on a 1-D global driver.

    ``GMST(t) = c_0 + c_1 D(t) + ... + c_d D(t)^d`` fitted over all training
    scenarios and years, where ``D`` is any global driver available at prediction
    time (cumulative CO2 emissions, effective radiative forcing, the GMST of a
    simple climate model, ...).

    Parameters
    ----------
    degree : int
        Polynomial degree (1 = linear, the Lütjens et al. choice).
    """

    def __init__(self, degree: int = 1) -> None:
        self.degree = _check_degree(degree)
        self.coef_: np.ndarray | None = None
        self.driver_name: str = "driver"
        self.rmse_: float | None = None

    def __repr__(self) -> str:
        state = "unfitted" if self.coef_ is None else f"coef={np.round(self.coef_, 6).tolist()}"
        return f"GlobalDriverRegression(degree={self.degree}, {state})"

    def fit(self, driver: Driver, target: Driver) -> GlobalDriverRegression:
        """Fit on a driver and the true GMST, each ``(scenario?, time)`` or {scenario: series}.

        Samples where the target is NaN (scenario padding) are skipped; the driver must be
        finite wherever the target is (it may cover more years).
        """
        tb = {k: _prep_driver(v, "target").to_dataset(name="gmst") for k, v in _blocks(target, "target").items()}
        samples = _Samples(tb)
        y = samples.matrix("gmst")[:, 0]
        x = samples.series(driver, "driver")
        self._fit_arrays(x, y)
        first = next(iter(_blocks(driver, "driver").values()))
        self.driver_name = str(first.name) if getattr(first, "name", None) is not None else "driver"
        return self

    def _fit_arrays(self, x: np.ndarray, y: np.ndarray) -> None:
        _check_regressor(x, self.degree, "the stage-1 driver")
        self.coef_ = _lstsq_columns(x, y[:, None], self.degree)[:, 0]
        self.rmse_ = float(np.sqrt(np.mean((self._eval(x) - y) ** 2)))

    def _eval(self, x: np.ndarray) -> np.ndarray:
        return _basis(x, self.degree) @ self.coef_

    def predict(self, driver: Driver) -> xr.DataArray | dict[str, xr.DataArray]:
        """GMST for a driver with dims ``(scenario?, time)``; raises on NaN in the driver.

        A mapping ``{scenario: driver}`` gives a dict ``{scenario: gmst}`` (no padding).
        """
        if _is_mapping(driver):
            return {str(k): self.predict(v) for k, v in driver.items()}
        if self.coef_ is None:
            raise ConfigError("GlobalDriverRegression is not fitted: call .fit(driver, gmst) first.")
        d = _as_series(driver)
        out = d.copy(data=self._eval(d.values.ravel()).reshape(d.shape))
        out.name = "gmst"
        out.attrs = {"long_name": "global-mean surface temperature from the stage-1 regression",
                     "driver": self.driver_name}
        return out

    def to_dataarray(self) -> xr.DataArray:
        """The coefficients as a DataArray on dim ``stage1_degree`` (for saving)."""
        if self.coef_ is None:
            raise ConfigError("GlobalDriverRegression is not fitted: nothing to save.")
        return xr.DataArray(
            self.coef_, dims=(STAGE1_DIM,), coords={STAGE1_DIM: np.arange(self.degree + 1)}, name=STAGE1_VAR,
            attrs={"description": "stage 1: gmst = sum_k stage1_coef[k] * driver**k",
                   "driver": self.driver_name, "rmse": float(self.rmse_ if self.rmse_ is not None else np.nan)},
        )

    @classmethod
    def from_dataarray(cls, da: xr.DataArray) -> GlobalDriverRegression:
        """Rebuild from :meth:`to_dataarray`."""
        coef = np.asarray(da.values, dtype=np.float64)
        if coef.ndim != 1 or coef.size < 2:
            raise DataError(f"stage-1 coefficients have shape {coef.shape}; expected [degree + 1] with degree >= 1.")
        obj = cls(coef.size - 1)
        obj.coef_ = coef
        obj.driver_name = str(da.attrs.get("driver", "driver"))
        rmse = da.attrs.get("rmse")
        obj.rmse_ = float(rmse) if rmse is not None else None
        return obj


# --------------------------------------------------------------------------- stage 2


class PatternScaling:
    """Linear (or polynomial) pattern scaling on xarray, with an optional stage-1 driver regression.

    Parameters
    ----------
    degree : int
        Degree of the per-point polynomial in GMST (1 = linear pattern scaling).
    stage1 : GlobalDriverRegression or bool, optional
        If given (``True`` means ``GlobalDriverRegression()``), :meth:`fit` takes a
        global driver (e.g. cumulative CO2 emissions), trains the pattern on the true
        GMST of the fields and the stage-1 regression driver -> true GMST, and
        :meth:`predict` maps driver -> GMST -> fields. Without it, the driver *is*
        the regressor of the pattern (normally the GMST itself).
    gmst_variable : str, optional
        Temperature variable whose area-weighted global mean is the true GMST (default:
        ``tas`` / ``2m_temperature`` / ``t2m``, whichever is present). Only used with stage 1.

    Attributes
    ----------
    coefficients : xr.Dataset
        One variable per field with dims ``(degree, *point_dims)``: ``field = sum_k
        coef[k] * gmst**k``; plus ``stage1_coef`` when stage 1 is used. Saves to netCDF.

    Examples
    --------
    >>> ps = PatternScaling().fit(gmst(train), train)            # doctest: +SKIP
    >>> pred = ps.predict(gmst(test))                            # true-GMST emulation
    >>> ps2 = PatternScaling(stage1=True).fit(cum_co2, train)     # two-stage LPS
    >>> pred2 = ps2.predict(cum_co2_test)
    """

    def __init__(self, degree: int = 1, stage1: GlobalDriverRegression | bool | None = None,
                 gmst_variable: str | None = None) -> None:
        self.degree = _check_degree(degree)
        if stage1 is True:
            stage1 = GlobalDriverRegression()
        elif stage1 is False:
            stage1 = None
        if stage1 is not None and not isinstance(stage1, GlobalDriverRegression):
            raise ConfigError(
                f"stage1={stage1!r}: expected a GlobalDriverRegression, True (a linear one) or None."
            )
        self.stage1: GlobalDriverRegression | None = stage1
        self.gmst_variable = gmst_variable
        self._coefficients: xr.Dataset | None = None

    def __repr__(self) -> str:
        fitted = "unfitted" if self._coefficients is None else f"variables={self.variables}"
        return f"PatternScaling(degree={self.degree}, stage1={self.stage1!r}, {fitted})"

    # ----------------------------------------------------------------- fit

    def fit(self, driver: Driver, fields: Fields, gmst: Driver | None = None) -> PatternScaling:
        """Fit the pattern (and stage 1 if configured).

        Parameters
        ----------
        driver : DataArray ``(scenario?, member?, time)`` or mapping {scenario: DataArray}
            Without stage 1: the regressor of the pattern (normally the true GMST, e.g.
            ``gmst(fields)``). With stage 1: the global driver (e.g. cumulative CO2).
            Its ``scenario``/``time`` coordinates must equal the fields' ones.
        fields : Dataset ``(scenario?, member?, time, *points)`` or mapping {scenario: Dataset}
            Any number of variables on any grid; members are averaged first.
        gmst : DataArray or mapping, optional
            Only with stage 1: the true GMST to train on, when the temperature field is
            not among ``fields`` (e.g. emulating only ``pr``). Default: the area-weighted
            global mean of ``fields[gmst_variable]``.

        Raises
        ------
        DataError
            Mismatched scenarios, a driver lacking years of the fields, NaN in the driver
            where the fields have data, or a driver with too few distinct values.
        GridError
            Scenarios on different grids.
        """
        gmst_series = gmst
        if gmst_series is not None and self.stage1 is None:
            raise ConfigError(
                "gmst= is only used with stage 1 (then the driver is e.g. cumulative emissions); without "
                "stage 1 pass the GMST itself as the driver: fit(gmst_series, fields)."
            )
        samples = _Samples(fields)
        x_driver = samples.series(driver, "driver")
        first = next(iter(_blocks(driver, "driver").values()))
        driver_name = str(first.name) if getattr(first, "name", None) is not None else "driver"
        if self.stage1 is not None:
            if gmst_series is None:
                self.gmst_variable = _temperature_name(samples.blocks[samples.labels[0]], self.gmst_variable)
                gmst_series = {k: _gmst_of(v, self.gmst_variable) for k, v in samples.blocks.items()}
                if samples.labels == [None]:
                    gmst_series = gmst_series[None]
            x = samples.series(gmst_series, "gmst")
            self.stage1._fit_arrays(x_driver, x)
            self.stage1.driver_name = driver_name
            regressor_name = "gmst"
        else:
            x = x_driver
            regressor_name = driver_name
        _check_regressor(x, self.degree, f"the regressor {regressor_name!r}")
        coefs = {}
        for name in samples.variables:
            template = samples.template(name)
            rest = list(template.dims)
            c = _lstsq_columns(x, samples.matrix(name), self.degree)
            coords = {k: v for k, v in template.coords.items() if set(v.dims) <= set(rest)}
            coords[DEGREE_DIM] = np.arange(self.degree + 1)
            attrs = {"description": f"pattern: {name} = sum_k {name}[k] * {regressor_name}**k"}
            if "units" in template.attrs:
                attrs["field_units"] = str(template.attrs["units"])
            coefs[name] = xr.DataArray(
                c.reshape((self.degree + 1, *template.shape)), dims=(DEGREE_DIM, *rest), coords=coords, attrs=attrs,
            )
        out = xr.Dataset(coefs)
        if self.stage1 is not None:
            out[STAGE1_VAR] = self.stage1.to_dataarray()
        out.attrs = {
            "atmos_model": "PatternScaling",
            "degree": self.degree,
            "regressor": regressor_name,
            "gmst_variable": str(self.gmst_variable or ""),
            "gmst_weights": "normalized cell areas (atmos.io.coords.area_weights)",
            "stage1": "GlobalDriverRegression" if self.stage1 is not None else "none",
            "training_samples": int(samples.n),
            "training_scenarios": ",".join(str(k) for k in samples.labels if k is not None),
        }
        self._coefficients = out
        return self

    # ----------------------------------------------------------------- predict

    @property
    def coefficients(self) -> xr.Dataset:
        """The fitted coefficients (see the class docstring)."""
        if self._coefficients is None:
            raise ConfigError("PatternScaling is not fitted: call .fit(driver, fields) or .load(path) first.")
        return self._coefficients

    @property
    def variables(self) -> list[str]:
        """Names of the emulated variables."""
        return [str(k) for k in self.coefficients.data_vars if k != STAGE1_VAR]

    def predict_gmst(self, driver: Driver) -> xr.DataArray:
        """Stage 1 only: the GMST predicted from a global driver (a dict for a mapping driver)."""
        if self.stage1 is None:
            raise ConfigError(
                "this PatternScaling has no stage 1 (its driver is the GMST itself); construct it with "
                "stage1=True to map a global driver to GMST."
            )
        self.coefficients  # noqa: B018 - raises if unfitted
        return self.stage1.predict(driver)

    def predict(self, driver: Driver) -> xr.Dataset:
        """Emulated fields for a driver with dims ``(scenario?, time)`` (or {scenario: DataArray}).

        With stage 1 the driver goes through :meth:`predict_gmst` first; use
        :meth:`predict_from_gmst` to drive the pattern with a given (e.g. true) GMST.

        Returns
        -------
        Dataset
            Each variable with dims ``(scenario?, time, *point_dims)``; for a mapping
            ``{scenario: driver}`` a dict ``{scenario: Dataset}``, so that scenarios of
            different lengths need no NaN padding (a driver with NaN is an error).
        """
        if _is_mapping(driver):
            return {k: self.predict(v) for k, v in driver.items()}
        if self.stage1 is not None:
            return self.predict_from_gmst(self.predict_gmst(driver))
        return self.predict_from_gmst(driver)

    def predict_from_gmst(self, gmst_series: Driver) -> xr.Dataset:
        """Evaluate the pattern (stage 2) for a regressor series; raises on NaN in it.

        A mapping ``{scenario: series}`` gives a dict ``{scenario: Dataset}``.
        """
        if _is_mapping(gmst_series):
            return {k: self.predict_from_gmst(v) for k, v in gmst_series.items()}
        coefs = self.coefficients
        x = _as_series(gmst_series, "gmst")
        p = self.degree + 1
        basis = _basis(x.values.ravel(), self.degree)  # [n, p]
        out = {}
        for name in self.variables:
            c = coefs[name]
            rest = [d for d in c.dims if d != DEGREE_DIM]
            cm = c.transpose(DEGREE_DIM, *rest).values.reshape(p, -1)
            vals = (basis @ cm).reshape((*x.shape, *[c.sizes[d] for d in rest]))
            coords = {k: v for k, v in c.coords.items() if k != DEGREE_DIM and DEGREE_DIM not in v.dims}
            coords.update({k: v for k, v in x.coords.items()})
            attrs = {"units": c.attrs["field_units"]} if "field_units" in c.attrs else {}
            out[name] = xr.DataArray(vals, dims=(*x.dims, *rest), coords=coords, attrs=attrs)
        return xr.Dataset(out, attrs={"source": "atmos PatternScaling emulation"})

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write the coefficients (and stage 1) to a netCDF file."""
        write_netcdf(self.coefficients, path, what="atmos pattern scaling")

    @classmethod
    def from_coefficients(cls, coefficients: xr.Dataset) -> PatternScaling:
        """Rebuild a fitted model from its :attr:`coefficients` Dataset."""
        if not isinstance(coefficients, xr.Dataset) or DEGREE_DIM not in coefficients.dims:
            raise DataError(
                f"not a pattern-scaling coefficient set: expected a Dataset with a {DEGREE_DIM!r} dimension "
                f"(written by PatternScaling.save), got dims "
                f"{sorted(map(str, getattr(coefficients, 'dims', {})))}."
            )
        degree = int(coefficients.sizes[DEGREE_DIM]) - 1
        stage1 = None
        if STAGE1_VAR in coefficients.data_vars:
            stage1 = GlobalDriverRegression.from_dataarray(coefficients[STAGE1_VAR])
        gv = coefficients.attrs.get("gmst_variable") or None
        obj = cls(degree=degree, stage1=stage1, gmst_variable=gv)
        if not [k for k in coefficients.data_vars if k != STAGE1_VAR]:
            raise DataError("the coefficient set has no field variables; nothing to predict.")
        obj._coefficients = coefficients
        return obj

    @classmethod
    def load(cls, path: str | os.PathLike) -> PatternScaling:
        """Load a model written by :meth:`save`."""
        if not os.path.exists(path):
            from atmos.errors import SourceError

            raise SourceError(f"coefficient file {os.fspath(path)!r} does not exist; write one with PatternScaling.save.")
        with xr.open_dataset(path) as ds:
            return cls.from_coefficients(ds.load())
