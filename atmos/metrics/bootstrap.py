"""Block-bootstrap confidence intervals over init times, for scores and for paired score differences.

Forecast scores are means over init times of per-init values (each metric's
``compute_chunk``; :mod:`atmos.metrics.deterministic`), turned into the score by the
metric's ``finalize`` (e.g. the square root of the mean MSE, or a ratio of two means).
Errors of forecasts started 12 h apart are strongly correlated, so init times are not
independent samples: resampling them one by one (the ordinary bootstrap) gives intervals
that are too narrow. The **moving block bootstrap** (Kuensch 1989; Liu & Singh 1992)
resamples blocks of ``L`` consecutive init times; the **circular** variant (Politis &
Romano 1992, the default) wraps blocks around the end so every init time is drawn
equally often. Each replicate draws ``ceil(n / L)`` blocks with uniformly random starts,
concatenates them and keeps the first ``n`` init times; the score is recomputed from the
resampled per-init values (``finalize`` of their mean), so ratio metrics (spread/skill,
CRPSS) are resampled correctly.

The interval is the percentile interval of the replicates. For two forecasts scored on
the same init times (:func:`bootstrap_difference`) the *same* resampled init times are
used for both (a paired bootstrap), so the large common part of their errors (the
weather of those days) cancels; a difference is significant at level ``1 - confidence``
when its interval excludes 0.

Default block length (:func:`default_block_length`): ``L = ceil(n^(1/3))`` init times
(the optimal rate for the variance of a mean, Hall, Horowitz & Jing 1995), at least 1;
e.g. 3 for 23 init times, 4 for 62. For long leads, whose errors stay correlated over
several days of inits, pass a longer block (``block_length="5D"`` with the init spacing
converted, or an integer number of init times).

References
----------
Kuensch, H. R. (1989), The jackknife and the bootstrap for general stationary
observations, Ann. Statist. 17, 1217-1241. Politis, D. N. & Romano, J. P. (1992), A
circular block-resampling procedure for stationary data, in Exploring the Limits of
Bootstrap, Wiley, 263-270. Hall, P., Horowitz, J. L. & Jing, B.-Y. (1995), On blocking
rules for the bootstrap with dependent data, Biometrika 82, 561-574. Wilks, D. S. (1997),
Resampling hypothesis tests for autocorrelated fields, J. Climate 10, 65-82.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_N_BOOT",
    "block_bootstrap_counts",
    "block_bootstrap_indices",
    "bootstrap_difference",
    "bootstrap_score",
    "default_block_length",
    "resolve_block_length",
]

XrObj = xr.Dataset | xr.DataArray
#: Default number of bootstrap replicates.
DEFAULT_N_BOOT = 1000


def default_block_length(n: int) -> int:
    """``ceil(n ** (1/3))`` init times, at least 1 (Hall, Horowitz & Jing 1995)."""
    if n < 1:
        raise DataError(f"cannot bootstrap {n} init times; need at least 1.")
    return max(1, math.ceil(n ** (1.0 / 3.0) - 1e-9))


def resolve_block_length(block_length: int | str | Any | None, times: np.ndarray | None, n: int) -> int:
    """Block length in init times from an int, a timedelta (``"2D"``: converted with the init spacing) or None.

    Raises
    ------
    ConfigError
        A non-positive or unparseable length, or a timedelta without init times to convert it.
    """
    if block_length is None:
        return default_block_length(n)
    if isinstance(block_length, (int, np.integer)) and not isinstance(block_length, bool):
        if block_length < 1:
            raise ConfigError(f"block_length={block_length}: expected a positive number of init times (or None: auto).")
        return int(min(block_length, n))
    text = str(block_length).strip()
    if text.isdigit():
        return resolve_block_length(int(text), times, n)
    try:
        span = pd.Timedelta(text)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"block_length={block_length!r}: expected a number of init times (e.g. 3) or a duration (e.g. '2D', '36h')."
        ) from err
    if span <= pd.Timedelta(0):
        raise ConfigError(f"block_length={block_length!r}: expected a positive duration.")
    if times is None or len(times) < 2:
        return 1
    step = pd.Timedelta(np.median(np.diff(np.asarray(times, dtype="datetime64[ns]"))))
    return int(min(n, max(1, round(span / step))))


def block_bootstrap_indices(
    n: int,
    n_boot: int = DEFAULT_N_BOOT,
    block_length: int | None = None,
    seed: int | np.random.Generator | None = 0,
    circular: bool = True,
) -> np.ndarray:
    """Resampled init-time indices, shape ``(n_boot, n)``, by the (circular) moving block bootstrap.

    Each row concatenates ``ceil(n / L)`` blocks ``start, start+1, ..., start+L-1``
    (modulo ``n`` when ``circular``; starts in ``0 .. n-L`` otherwise) and keeps ``n``.
    ``block_length=1`` is the ordinary bootstrap. Deterministic for a given ``seed``.
    """
    if n < 1:
        raise DataError(f"cannot bootstrap {n} init times; need at least 1.")
    if n_boot < 1:
        raise ConfigError(f"n_boot={n_boot}: expected a positive number of bootstrap replicates (e.g. 1000).")
    length = default_block_length(n) if block_length is None else int(block_length)
    if length < 1:
        raise ConfigError(f"block_length={block_length}: expected a positive number of init times.")
    length = min(length, n)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_blocks = math.ceil(n / length)
    high = n if circular else n - length + 1
    starts = rng.integers(0, high, size=(n_boot, n_blocks))
    idx = starts[:, :, None] + np.arange(length)[None, None, :]
    idx = idx.reshape(n_boot, n_blocks * length)[:, :n]
    return idx % n if circular else idx


def block_bootstrap_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each init time appears in each replicate: ``(n_boot, n)`` from :func:`block_bootstrap_indices`."""
    n_boot = indices.shape[0]
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), indices.shape[1]), indices.ravel()), 1.0)
    return counts


def _replicate_means(values: XrObj, counts: np.ndarray, dim: str) -> XrObj:
    """Means over ``dim`` of every bootstrap replicate (new leading dim ``bootstrap``)."""
    w = xr.DataArray(counts / counts.shape[1], dims=("bootstrap", dim))
    v = values.drop_vars([c for c in values.coords if dim in values[c].dims])
    return xr.dot(w, v, dim=dim)


def _check_time(values: XrObj, dim: str, what: str) -> int:
    if dim not in values.dims:
        raise DataError(
            f"{what} has no {dim!r} dimension (dims {sorted(map(str, values.dims))}); pass the per-init chunk "
            "values of a metric (metric.compute_chunk(...)), not the time mean."
        )
    return int(values.sizes[dim])


def _identity(x: XrObj) -> XrObj:
    return x


def _interval(reps: XrObj, confidence: float) -> tuple[XrObj, XrObj]:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence={confidence}: expected a level in (0, 1), e.g. 0.95.")
    a = (1.0 - confidence) / 2.0
    lo = reps.quantile(a, dim="bootstrap", skipna=False).drop_vars("quantile")
    hi = reps.quantile(1.0 - a, dim="bootstrap", skipna=False).drop_vars("quantile")
    return lo, hi


def bootstrap_score(
    values: xr.DataArray,
    finalize: Callable[[xr.DataArray], xr.DataArray] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    block_length: int | str | None = None,
    confidence: float = 0.95,
    seed: int | None = 0,
    circular: bool = True,
    dim: str = "time",
) -> xr.Dataset:
    """A score and its block-bootstrap percentile interval from per-init values.

    Parameters
    ----------
    values : DataArray
        Per-init values of a metric (``metric.compute_chunk(...)``) with dim ``dim``.
    finalize : callable, optional
        The metric's ``finalize`` (default identity): the score is
        ``finalize(values.mean(dim))``, each replicate ``finalize`` of its resampled mean.
    n_boot, block_length, confidence, seed, circular
        Replicates; block length in init times, a duration (``"2D"``) or None for
        :func:`default_block_length`; interval level; random seed; circular blocks.

    Returns
    -------
    Dataset
        ``score``, ``lower``, ``upper`` (the dims of the score); attrs ``block_length``,
        ``n_boot``, ``confidence``, ``n_init_times``.
    """
    finalize = finalize or _identity
    n = _check_time(values, dim, "values")
    times = values[dim].values if dim in values.coords else None
    length = resolve_block_length(block_length, times, n)
    counts = block_bootstrap_counts(block_bootstrap_indices(n, n_boot, length, seed, circular), n)
    score = finalize(values.mean(dim, skipna=False))
    reps = finalize(_replicate_means(values, counts, dim))
    lo, hi = _interval(reps, confidence)
    out = xr.Dataset({"score": score, "lower": lo, "upper": hi})
    out.attrs = {"block_length": length, "n_boot": int(n_boot), "confidence": float(confidence), "n_init_times": n,
                 "method": "circular block bootstrap, percentile interval" if circular else
                 "moving block bootstrap, percentile interval"}
    return out


def bootstrap_difference(
    values_a: xr.DataArray,
    values_b: xr.DataArray,
    finalize_a: Callable[[xr.DataArray], xr.DataArray] | None = None,
    finalize_b: Callable[[xr.DataArray], xr.DataArray] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    block_length: int | str | None = None,
    confidence: float = 0.95,
    seed: int | None = 0,
    circular: bool = True,
    dim: str = "time",
) -> xr.Dataset:
    """Paired block bootstrap of the score difference ``A - B`` of two forecasts on the same init times.

    Both are resampled with the *same* init-time indices in every replicate. ``A - B`` is
    significant at level ``1 - confidence`` when its percentile interval excludes 0;
    ``p_value`` is the two-sided bootstrap p-value ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))``
    (its resolution is ``1 / n_boot``).

    Parameters
    ----------
    values_a, values_b : DataArray
        Per-init values (``compute_chunk``) of the two forecasts, with the same ``dim``
        coordinate (the common init times; they are aligned on it, inner join).
    finalize_a, finalize_b : callable, optional
        The metrics' ``finalize`` (``finalize_b`` defaults to ``finalize_a``).

    Returns
    -------
    Dataset
        ``score_a``, ``score_b``, ``difference`` (= score_a - score_b), ``lower``,
        ``upper``, ``significant`` (bool), ``p_value``; attrs as :func:`bootstrap_score`.

    Raises
    ------
    DataError
        The two share no init time.
    """
    finalize_a = finalize_a or _identity
    finalize_b = finalize_b or finalize_a
    _check_time(values_a, dim, "values_a")
    _check_time(values_b, dim, "values_b")
    if dim in values_a.coords and dim in values_b.coords:
        values_a, values_b = xr.align(values_a, values_b, join="inner", exclude=[d for d in values_a.dims if d != dim])
    n = int(values_a.sizes[dim])
    if n == 0 or values_b.sizes[dim] != n:
        raise DataError(
            f"the two forecasts share {n} init time(s) ({values_a.sizes[dim]} and {values_b.sizes[dim]} given); "
            "a paired comparison needs both scored on the same init times."
        )
    times = values_a[dim].values if dim in values_a.coords else None
    length = resolve_block_length(block_length, times, n)
    counts = block_bootstrap_counts(block_bootstrap_indices(n, n_boot, length, seed, circular), n)
    sa = finalize_a(values_a.mean(dim, skipna=False))
    sb = finalize_b(values_b.mean(dim, skipna=False))
    reps = finalize_a(_replicate_means(values_a, counts, dim)) - finalize_b(_replicate_means(values_b, counts, dim))
    lo, hi = _interval(reps, confidence)
    below = (reps <= 0).mean("bootstrap")
    above = (reps >= 0).mean("bootstrap")
    p = np.minimum(1.0, 2.0 * np.minimum(below, above)).where(reps.notnull().all("bootstrap"))
    diff = sa - sb
    out = xr.Dataset({
        "score_a": sa, "score_b": sb, "difference": diff, "lower": lo, "upper": hi,
        "significant": (lo > 0) | (hi < 0), "p_value": p,
    })
    out.attrs = {"block_length": length, "n_boot": int(n_boot), "confidence": float(confidence), "n_init_times": n,
                 "method": ("circular" if circular else "moving") + " block bootstrap (paired), percentile interval"}
    return out
