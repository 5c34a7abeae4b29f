"""Compression of the stores and files atmos writes: lossless by default, information-preserving lossy on request.

Lossless (every Zarr store atmos writes): Blosc with Zstandard (level 5) after a byte shuffle
(:data:`LOSSLESS`), about 4x on SPEEDY-world float32 fields against 2.2x for zarr's default
(Zstandard level 0 without shuffle). netCDF files keep zlib level 4 with shuffle
(:func:`atmos.io.write.write_netcdf`): every netCDF reader decodes it.

Lossy, keeping a fraction of the *real* information per variable (Klöwer et al. 2021, "Compressing
atmospheric data into its real information content", the method of xbitinfo / BitInformation.jl):

1. :func:`bitinformation`: for every bit position of the floats (sign, exponent in sign-magnitude
   form, mantissa) the mutual information between that bit in neighbouring grid points along one
   dimension (longitude by default); information that a random 50/50 bit would show with
   ``confidence`` (binomial test, as ``set_zero_insignificant`` in BitInformation.jl) is set to 0.
2. :func:`keepbits_for`: the fewest mantissa bits whose cumulative information reaches the chosen
   fraction (``--information 0.99`` keeps 99 %), per variable.
3. :func:`bitround`: round to nearest (ties to even) at that many mantissa bits, bit for bit as
   ``numcodecs.BitRound``. The error of every value is at most half a unit in its last kept place,
   ``|x - round(x)| <= 2**(floor(log2|x|) - keepbits - 1) <= |x| * 2**-(keepbits + 1)``
   (:func:`error_bound`); the zeroed trailing bits then compress well losslessly.

The information is computed here with numpy: xbitinfo 0.0.7 pins ``numpy<2.4`` and
``numcodecs<0.16.4`` (its Julia path needs Julia; its Python path has no significance filter, so the
noise bits count as information).

Alternatives, when installed (``pip install atmos[compress]``): ``codec="zfp"`` (lossy, fixed
accuracy ``tolerance`` in the variable's units) and ``codec="pcodec"`` (lossless).

Every store or file written with :func:`write_compressed` records in its attributes
``atmos_compression`` (JSON: codec, information fraction, and per variable the kept mantissa bits,
PSNR, max abs error, bytes per value and ratio) and per variable ``atmos_keepbits``,
``atmos_psnr_db`` and ``atmos_max_abs_error``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError

__all__ = [
    "CODECS",
    "LOSSLESS",
    "LOSSLESS_LABEL",
    "SPATIAL_DIMS",
    "TIME_DIMS",
    "StreamRounder",
    "VariableReport",
    "bitinformation",
    "bitround",
    "check_information",
    "compress",
    "compression_report",
    "error_bound",
    "information_kept",
    "keepbits_along",
    "keepbits_for",
    "lossless_codec",
    "round_dataset",
    "spatial_axes",
    "store_nbytes",
    "write_compressed",
    "zarr_encoding",
]

#: The lossless codec of every Zarr store atmos writes (zarr v3 ``BloscCodec`` arguments).
LOSSLESS: dict[str, Any] = {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}

#: Codecs of :func:`zarr_encoding`: ``blosc`` (default, lossless), ``pcodec`` (lossless) and
#: ``zfp`` (lossy, fixed accuracy); the last two need the ``compress`` extra.
CODECS = ("blosc", "pcodec", "zfp")

#: Per-variable attributes written by :func:`write_compressed` (dropped from a recompressed input).
_VAR_KEYS = ("atmos_keepbits", "atmos_psnr_db", "atmos_max_abs_error")

_EXTRA = "pip install 'atmos[compress]' (zfpy, pcodec)"


# -- checks ------------------------------------------------------------------------------------
def check_information(information: Any, what: str = "--information") -> float | None:
    """``information`` as a float in ``(0, 1]`` (None stays None: lossless).

    Raises
    ------
    ConfigError
        Not a number, or outside ``(0, 1]``; the message names the value and the fix.
    """
    if information is None:
        return None
    try:
        f = float(information)
    except (TypeError, ValueError):
        f = float("nan")
    if not (0.0 < f <= 1.0):
        raise ConfigError(
            f"{what} {information!r} is not a fraction of information in (0, 1]: pass e.g. 0.99 (keep 99 % of "
            f"the real information per variable) or 0.999, 1 to keep every bit, or leave {what} out for "
            "lossless compression."
        )
    return f


def _float_info(dtype: Any) -> tuple[int, int, str]:
    """(bits, mantissa bits, unsigned view dtype) of a float32/float64 dtype."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DataError(f"bit information and bit rounding need float32 or float64 data, got {dt}.")
    fi = np.finfo(dt)
    return fi.bits, fi.nmant, f"u{dt.itemsize}"


# -- bitwise real information --------------------------------------------------------------------
def _signed_exponent(a: np.ndarray) -> np.ndarray:
    """The bits of ``a`` with the biased exponent turned into sign and magnitude (as BitInformation.jl).

    A biased exponent flips many bits between 0.9 and 1.1; in sign-magnitude form neighbouring
    values share their exponent bits, so the information sits in few bits.
    """
    nbits, nmant, u = _float_info(a.dtype)
    ut = np.dtype(u).type
    ebits = nbits - nmant - 1
    bias = (1 << (ebits - 1)) - 1
    ui = a.view(u)
    sign_mask = ut(1 << (nbits - 1))
    sfmask = ut(int(sign_mask) | ((1 << nmant) - 1))
    emask = ut(((1 << ebits) - 1) << nmant)
    e = ((ui & emask) >> ut(nmant)).astype(np.int64) - bias
    eabs = (np.abs(e) & ((1 << (ebits - 1)) - 1)).astype(u)
    esign = np.where(e < 0, ut(1 << (nbits - 2)), ut(0)).astype(u)
    return (ui & sfmask) | esign | (eabs << ut(nmant))


def _free_entropy(n: int, confidence: float) -> float:
    """Information a random bit shows in ``n`` pairs at ``confidence`` (binomial; BitInformation.jl)."""
    if n <= 0:
        return 1.0
    p = 0.5 + NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0) / (2.0 * math.sqrt(n))
    p = min(p, 1.0)
    h = -sum(q * math.log2(q) for q in (p, 1.0 - p) if q > 0)
    return 1.0 - h


def bitinformation(a: Any, axis: int = -1, *, confidence: float = 0.99, drop_artificial: bool = True) -> np.ndarray:
    """Real information per bit of a float array: mutual information of each bit between neighbours.

    Parameters
    ----------
    a : array-like of float32 or float64
        Non-finite values are left out (with the neighbour they pair with).
    axis : int
        The dimension along which neighbours are paired (longitude, where fields are smoothest).
    confidence : float
        Information below what a random bit shows at this confidence is set to 0 (0 keeps all).
    drop_artificial : bool
        Real information decays along the mantissa; information that comes back after an
        insignificant mantissa bit is artificial (left by an earlier quantisation or packing, Klöwer
        et al. 2021) and is set to 0 (needs ``confidence`` > 0).

    Returns
    -------
    numpy.ndarray ``[nbits]``
        Bits in order sign, exponent (sign-magnitude), mantissa; in bits (0..1 each).
    """
    a = np.asarray(a)
    nbits, _, _ = _float_info(a.dtype)
    a = np.moveaxis(a, axis, -1)
    if a.shape[-1] < 2:
        raise DataError(f"bit information needs at least 2 values along the axis, got shape {a.shape}.")
    x, y = a[..., :-1].ravel(), a[..., 1:].ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.ascontiguousarray(x[ok]), np.ascontiguousarray(y[ok])
    n = x.size
    info = np.zeros(nbits)
    if n == 0:
        return info
    bx, by = _signed_exponent(x), _signed_exponent(y)
    one = bx.dtype.type(1)
    for i in range(nbits):
        s = bx.dtype.type(nbits - 1 - i)
        u, v = ((bx >> s) & one).astype(bool), ((by >> s) & one).astype(bool)
        n11 = np.count_nonzero(u & v)
        nu, nv = np.count_nonzero(u), np.count_nonzero(v)
        joint = np.array([[n - nu - nv + n11, nv - n11], [nu - n11, n11]], dtype=float) / n
        pu, pv = joint.sum(axis=1), joint.sum(axis=0)
        m = 0.0
        for r in range(2):
            for c in range(2):
                if joint[r, c] > 0:
                    m += joint[r, c] * math.log2(joint[r, c] / (pu[r] * pv[c]))
        info[i] = max(m, 0.0)
    if confidence > 0:
        info[info <= _free_entropy(n, confidence)] = 0.0
        if drop_artificial:
            nmant = np.finfo(a.dtype).nmant
            mant = info[nbits - nmant:]
            zero = np.flatnonzero(mant == 0)
            if zero.size:
                mant[zero[0]:] = 0.0
    return info


def keepbits_along(a: Any, axes: Iterable[int], information: float, *,
                   confidence: float = 0.99) -> tuple[int, float]:
    """Kept mantissa bits for ``information`` as the largest over neighbours along each of ``axes``.

    Returns
    -------
    (keepbits, the smallest fraction of information kept along any of the axes)
    """
    a = np.asarray(a)
    infos = [bitinformation(a, ax, confidence=confidence) for ax in axes if a.ndim and a.shape[ax] >= 2]
    if not infos:
        raise DataError(f"no axis with 2 or more values to pair neighbours along (shape {a.shape}, axes {list(axes)}).")
    best = max(keepbits_for(info, information) for info in infos)
    return best, min(information_kept(info, best) for info in infos)


def information_kept(info: np.ndarray, keepbits: int) -> float:
    """Fraction of the total information in the sign, exponent and first ``keepbits`` mantissa bits."""
    info = np.asarray(info, dtype=float)
    total = float(info.sum())
    if total <= 0:
        return 1.0
    nbits = info.size
    nmant = {32: 23, 64: 52, 16: 10}[nbits]
    return float(info[: nbits - nmant + int(keepbits)].sum() / total)


def keepbits_for(info: np.ndarray, fraction: float) -> int:
    """The fewest mantissa bits that keep ``fraction`` of the information in ``info`` (per bit).

    ``fraction`` 1 keeps every mantissa bit; a field without any real information (a constant)
    keeps every bit too (it compresses to almost nothing losslessly).
    """
    fraction = check_information(fraction, "information")  # type: ignore[assignment]
    info = np.asarray(info, dtype=float)
    nbits = info.size
    nmant = {32: 23, 64: 52, 16: 10}[nbits]
    total = float(info.sum())
    if fraction >= 1.0 or total <= 0:
        return nmant
    cdf = np.cumsum(info) / total
    idx = int(np.argmax(cdf >= fraction - 1e-12))
    return int(min(max(idx + 1 - (nbits - nmant), 0), nmant))


# -- rounding -----------------------------------------------------------------------------------
def bitround(a: Any, keepbits: int) -> np.ndarray:
    """Round floats to ``keepbits`` mantissa bits (to nearest, ties to even), as ``numcodecs.BitRound``.

    Returns a new array (``a`` is not modified); NaN stays NaN.
    """
    a = np.asarray(a)
    nbits, nmant, u = _float_info(a.dtype)
    keepbits = int(keepbits)
    if not 0 <= keepbits <= nmant:
        raise ConfigError(f"keepbits {keepbits} is outside 0..{nmant} for {a.dtype}.")
    if keepbits == nmant:
        return a.copy()
    ut = np.dtype(u).type
    maskbits = nmant - keepbits
    mask = ut(((1 << nbits) - 1) >> maskbits << maskbits)
    half = ut((1 << (maskbits - 1)) - 1)
    b = a.view(u).copy()
    b += ((b >> ut(maskbits)) & ut(1)) + half
    b &= mask
    out = b.view(a.dtype)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = a[nan]
    return out


def error_bound(a: Any, keepbits: int) -> np.ndarray:
    """The largest error :func:`bitround` may make at each value: half a unit in the last kept place,
    ``2**(floor(log2|x|) - keepbits - 1)`` (0 where ``x`` is 0 or every bit is kept)."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    _, nmant, _ = _float_info(np.asarray(a).dtype)
    if int(keepbits) >= nmant:
        return np.zeros_like(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, e = np.frexp(a)  # a = m * 2**e with 0.5 <= m < 1: floor(log2 a) = e - 1
    return np.where(a > 0, np.ldexp(1.0, e - 1 - int(keepbits) - 1), 0.0)


# -- reports ------------------------------------------------------------------------------------
@dataclass
class VariableReport:
    """How one variable was compressed: kept bits, errors against the original, size."""

    keepbits: int | None = None
    information: float | None = None  # fraction of the real information kept
    max_abs_error: float = 0.0
    rmse: float = 0.0
    psnr_db: float = float("inf")
    value_range: float = 0.0
    nbytes_raw: int = 0
    n_values: int = 0
    nbytes_stored: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.nbytes_stored else self.nbytes_raw / self.nbytes_stored

    def as_dict(self) -> dict[str, Any]:
        def num(x: Any) -> Any:
            if x is None:
                return None
            x = float(x)
            return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")

        n_values = max(self.n_values, 1)
        return {
            "keepbits": self.keepbits,
            "information_kept": num(self.information),
            "max_abs_error": num(self.max_abs_error),
            "rmse": num(self.rmse),
            "psnr_db": num(self.psnr_db),
            "value_range": num(self.value_range),
            "bytes_per_value": None if self.nbytes_stored is None else self.nbytes_stored / n_values,
            "ratio": num(self.ratio),
            **self.extra,
        }


def _errors(orig: np.ndarray, dec: np.ndarray) -> tuple[float, float, float, float]:
    """(max abs error, rmse, psnr in dB, range) over the finite values of ``orig``."""
    o = np.asarray(orig, dtype=np.float64)
    d = np.asarray(dec, dtype=np.float64)
    ok = np.isfinite(o)
    if not ok.any():
        return 0.0, 0.0, float("inf"), 0.0
    err = d[ok] - o[ok]
    mx = float(np.max(np.abs(err))) if err.size else 0.0
    rmse = float(np.sqrt(np.mean(err**2))) if err.size else 0.0
    rng = float(o[ok].max() - o[ok].min())
    psnr = float("inf") if rmse == 0 else (20 * math.log10(rng / rmse) if rng > 0 else float("-inf"))
    return mx, rmse, psnr, rng


def compression_report(original: xr.Dataset, decoded: xr.Dataset,
                       keepbits: Mapping[Hashable, int] | None = None,
                       kept: Mapping[Hashable, float] | None = None,
                       stored: Mapping[Hashable, int] | None = None) -> dict[str, VariableReport]:
    """Per floating-point variable: errors of ``decoded`` against ``original`` and the stored size."""
    out: dict[str, VariableReport] = {}
    for name, var in original.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating):
            continue
        o = np.asarray(var.values)
        d = np.asarray(decoded[name].values)
        mx, rmse, psnr, rng = _errors(o, d)
        out[str(name)] = VariableReport(
            keepbits=None if keepbits is None else keepbits.get(name),
            information=None if kept is None else kept.get(name),
            max_abs_error=mx, rmse=rmse, psnr_db=psnr, value_range=rng,
            nbytes_raw=int(o.nbytes), n_values=int(o.size), nbytes_stored=None if stored is None else stored.get(str(name)),
        )
    return out


class StreamRounder:
    """Bit rounding of fields written chunk by chunk (a forecast lead by lead), with running errors.

    The kept mantissa bits of a variable are fixed from the first chunk of it that has finite
    values (for a forecast: the initial conditions, lead 0) and then used for every chunk, so that
    the whole variable has one precision; :meth:`state` and :meth:`from_state` carry them (and the
    running errors) across a resumed run.

    Parameters
    ----------
    information : float in (0, 1] or None
        None: lossless (values pass unchanged; only the sizes are counted).
    confidence : float
        Of the significance filter of :func:`bitinformation`.
    """

    def __init__(self, information: float | None, confidence: float = 0.99) -> None:
        self.information = check_information(information)
        self.confidence = float(confidence)
        self.keepbits: dict[str, int] = {}
        self.kept: dict[str, float] = {}
        self.acc: dict[str, dict[str, float]] = {}

    def __call__(self, name: str, values: np.ndarray, axes: Iterable[int] = (-1,)) -> np.ndarray:
        """``values`` rounded at the variable's kept bits (fixed on its first finite chunk, the most
        bits over neighbours along each of ``axes``: the spatial axes)."""
        a = np.asarray(values)
        acc = self.acc.setdefault(name, {"n_values": 0, "n": 0, "sse": 0.0, "max_abs_error": 0.0,
                                         "vmin": float("inf"), "vmax": float("-inf")})
        acc["n_values"] += int(a.size)
        if self.information is None or a.dtype not in (np.float32, np.float64):
            return a
        finite = np.isfinite(a)
        if name not in self.keepbits:
            axes = [ax for ax in axes if a.ndim and a.shape[ax] >= 2]
            if not finite.any() or not axes:
                return a  # nothing to learn the precision from yet (a decoder's NaN lead 0)
            self.keepbits[name], self.kept[name] = keepbits_along(a, axes, self.information,
                                                                  confidence=self.confidence)
        r = bitround(a, self.keepbits[name])
        if finite.any():
            err = np.abs(r[finite].astype(np.float64) - a[finite])
            acc["n"] += int(err.size)
            acc["sse"] += float(np.sum(err**2))
            acc["max_abs_error"] = max(acc["max_abs_error"], float(err.max()))
            acc["vmin"] = min(acc["vmin"], float(a[finite].min()))
            acc["vmax"] = max(acc["vmax"], float(a[finite].max()))
        return r

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (kept bits and running errors)."""
        def clean(d: dict[str, float]) -> dict[str, Any]:
            return {k: (v if math.isfinite(v) else None) for k, v in d.items()}

        return {"information": self.information, "keepbits": dict(self.keepbits), "information_kept": dict(self.kept),
                "accumulators": {k: clean(v) for k, v in self.acc.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StreamRounder:
        """The rounder of :meth:`state` (a resumed run)."""
        r = cls(state.get("information"))
        r.keepbits = {str(k): int(v) for k, v in (state.get("keepbits") or {}).items()}
        r.kept = {str(k): float(v) for k, v in (state.get("information_kept") or {}).items()}
        for k, v in (state.get("accumulators") or {}).items():
            d = dict(v)
            d["vmin"] = float("inf") if d.get("vmin") is None else d["vmin"]
            d["vmax"] = float("-inf") if d.get("vmax") is None else d["vmax"]
            r.acc[str(k)] = d
        return r

    def report(self, stored: Mapping[str, int] | None = None, itemsize: int = 4) -> dict[str, VariableReport]:
        """Per variable: kept bits, errors over everything written, and (with ``stored``) sizes."""
        out: dict[str, VariableReport] = {}
        for name, a in self.acc.items():
            n = max(int(a["n"]), 1)
            rmse = math.sqrt(a["sse"] / n) if a["n"] else 0.0
            rng = (a["vmax"] - a["vmin"]) if a["n"] else 0.0
            psnr = float("inf") if rmse == 0 else (20 * math.log10(rng / rmse) if rng > 0 else float("-inf"))
            out[name] = VariableReport(
                keepbits=self.keepbits.get(name), information=self.kept.get(name), max_abs_error=a["max_abs_error"],
                rmse=rmse, psnr_db=psnr, value_range=rng, nbytes_raw=int(a["n_values"]) * itemsize,
                n_values=int(a["n_values"]), nbytes_stored=None if stored is None else stored.get(name),
            )
        return out

    def meta(self) -> dict[str, Any]:
        """Codec and method of a store written through this rounder."""
        return {
            "codec": LOSSLESS_LABEL,
            "method": "bitround (bitwise real information, Kloewer et al. 2021)" if self.information is not None
            else "lossless",
            "information": self.information,
            "information_dim": "max over the spatial dims, kept bits fixed on the first finite chunk",
        }

    def attr(self, stored: Mapping[str, int] | None = None) -> str:
        """The ``atmos_compression`` attribute (JSON): :meth:`meta`, the report, and the state to resume."""
        return json.dumps({**json.loads(_json_attrs(self.report(stored), self.meta())), "state": self.state()})

    @classmethod
    def from_attr(cls, attr: Any) -> StreamRounder:
        """The rounder recorded in an ``atmos_compression`` attribute (missing or unreadable: lossless)."""
        try:
            rec = json.loads(attr) if attr else {}
        except (TypeError, ValueError):
            rec = {}
        return cls.from_state(rec.get("state", {"information": rec.get("information")}))


# -- datasets -----------------------------------------------------------------------------------
#: Dims along which neighbours are paired by default (those of them a variable has).
SPATIAL_DIMS = ("longitude", "latitude", "lon", "lat", "x", "y", "cell")
#: Time dims also paired along by :func:`round_dataset` (neighbours in time carry information too).
TIME_DIMS = ("time", "prediction_timedelta")


def spatial_axes(dims: Iterable[Hashable]) -> list[int]:
    """Axes of the :data:`SPATIAL_DIMS` among ``dims`` (none: the last axis)."""
    dims = list(dims)
    return [dims.index(d) for d in SPATIAL_DIMS if d in dims] or [-1]


def _info_axes(var: xr.DataArray, dim: str | None) -> list[int]:
    if dim:
        if dim not in var.dims:
            raise ConfigError(f"dimension {dim!r} is not among the dims {var.dims} of {var.name!r}; pass another --dim.")
        return [var.dims.index(dim)]
    axes = [var.dims.index(d) for d in SPATIAL_DIMS + TIME_DIMS if d in var.dims]
    return axes or [var.ndim - 1]


def round_dataset(
    ds: xr.Dataset, information: float, *, dim: str | None = None, confidence: float = 0.99,
    keepbits: Mapping[Hashable, int] | None = None,
) -> tuple[xr.Dataset, dict[str, int], dict[str, float]]:
    """Bit-round every float variable of ``ds`` to keep ``information`` of its real information.

    Parameters
    ----------
    information : float in (0, 1]
    dim : str, optional
        Dimension of the neighbours for :func:`bitinformation` (default: the most bits over the
        spatial and time dims, :data:`SPATIAL_DIMS` and :data:`TIME_DIMS`, else the last dim).
    keepbits : mapping, optional
        Kept mantissa bits to use instead of computing them (e.g. those recorded in a store).

    Returns
    -------
    (rounded dataset, keepbits per variable, fraction of information kept per variable)
    Float32 and float64 variables are rounded (in their own precision); other variables are unchanged.
    """
    information = check_information(information)  # type: ignore[assignment]
    out = ds.copy(deep=False)
    bits: dict[str, int] = {}
    kept: dict[str, float] = {}
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating) or var.ndim == 0:
            continue
        a = np.asarray(var.values)
        if a.dtype not in (np.float32, np.float64):
            continue
        if keepbits is not None and name in keepbits:
            k, frac = int(keepbits[name]), float("nan")
        else:
            axes = [ax for ax in _info_axes(var, dim) if var.shape[ax] >= 2]
            if not axes:
                continue
            k, frac = keepbits_along(a, axes, information, confidence=confidence)
        bits[str(name)], kept[str(name)] = k, frac
        out[name] = var.copy(data=bitround(a, k))
    return out, bits, kept


def lossless_codec() -> Any:
    """The zarr v3 codec of :data:`LOSSLESS` (``BloscCodec``)."""
    import zarr.codecs as zc

    return zc.BloscCodec(**LOSSLESS)


#: Human-readable name of the lossless codec (recorded in ``atmos_compression``).
LOSSLESS_LABEL = f"zarr blosc {LOSSLESS['cname']} level {LOSSLESS['clevel']} + {LOSSLESS['shuffle']}"


def zarr_encoding(ds: xr.Dataset, codec: str = "blosc", *, tolerance: float | Mapping[Hashable, float] | None = None,
                  chunks: Mapping[Hashable, tuple[int, ...]] | None = None) -> dict[str, dict[str, Any]]:
    """Zarr v3 encoding of every float variable of ``ds`` for ``codec`` (see :data:`CODECS`).

    Raises
    ------
    ConfigError
        An unknown codec, ``zfp`` without a positive ``tolerance``, or a codec whose package is missing.
    """
    import zarr.codecs as zc

    if codec not in CODECS:
        raise ConfigError(f"codec {codec!r} is not one of {', '.join(CODECS)}; pass --codec blosc (lossless, default).")
    tols = tolerance if isinstance(tolerance, Mapping) else None
    if codec == "zfp" and tols is None and not (tolerance is not None and float(tolerance) > 0):
        raise ConfigError(
            f"codec zfp needs a positive --tolerance (absolute error, in the variables' units), got {tolerance!r}."
        )
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if not np.issubdtype(var.dtype, np.floating) or var.ndim == 0:
            continue
        if codec == "blosc":
            e: dict[str, Any] = {"compressors": (zc.BloscCodec(**LOSSLESS),)}
        else:
            try:
                if codec == "pcodec":
                    import pcodec  # noqa: F401

                    e = {"serializer": zc.numcodecs.PCodec(level=8), "compressors": ()}
                else:
                    import zfpy  # noqa: F401

                    if var.ndim > 4:
                        raise ConfigError(
                            f"zfp compresses arrays of up to 4 dims; {name!r} has {var.ndim} {var.dims}. Select or "
                            "stack dims first (e.g. one initial time of a forecast), or use --information."
                        )
                    tol = tols.get(name) if tols is not None else tolerance
                    if tol is None:  # a coordinate or a variable without its own tolerance: lossless
                        enc[str(name)] = {"compressors": (zc.BloscCodec(**LOSSLESS),)}
                        continue
                    e = {"serializer": zc.numcodecs.ZFPY(mode=4, tolerance=float(tol)), "compressors": ()}
            except ImportError as err:
                raise ConfigError(f"codec {codec!r} needs its package ({err}); {_EXTRA}, or use --codec blosc.") from err
        if chunks is not None and name in chunks:
            e["chunks"] = tuple(chunks[name])
        elif var.encoding.get("chunks") and len(var.encoding["chunks"]) == var.ndim:
            e["chunks"] = tuple(var.encoding["chunks"])
        elif getattr(var, "chunks", None) is not None and var.chunks:
            e["chunks"] = tuple(c[0] for c in var.chunks)
        enc[str(name)] = e
    return enc


def store_nbytes(path: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, int]:
    """Bytes on disk of each array of a local zarr store (its chunk files and metadata)."""
    p = Path(path)
    out: dict[str, int] = {}
    for child in sorted(p.iterdir()) if p.is_dir() else []:
        if child.is_dir() and (names is None or child.name in set(names)):
            out[child.name] = sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
    return out


def _json_attrs(report: Mapping[str, VariableReport], meta: Mapping[str, Any]) -> str:
    raw = sum(r.nbytes_raw for r in report.values())
    stored = [r.nbytes_stored for r in report.values()]
    n = sum(r.n_values for r in report.values())
    total: dict[str, Any] = {"nbytes_raw": raw}
    if stored and all(s is not None for s in stored):
        s = int(sum(stored))  # type: ignore[arg-type]
        total.update(nbytes_stored=s, ratio=raw / s if s else None, bytes_per_value=s / n if n else None)
    return json.dumps({**meta, **total, "variables": {k: r.as_dict() for k, r in report.items()}})


def write_compressed(
    ds: xr.Dataset, path: str | os.PathLike, *, information: float | None = None, codec: str = "blosc",
    tolerance: float | Mapping[Hashable, float] | None = None, dim: str | None = None, what: str = "atmos", report: bool = True,
) -> dict[str, Any]:
    """Write ``ds`` compressed to a Zarr store, or a netCDF file when ``path`` ends in ``.nc``; atomically.

    Parameters
    ----------
    information : float in (0, 1], optional
        Bit-round each float variable to keep this fraction of its real information (None: lossless).
    codec : {"blosc", "pcodec", "zfp"}
        Zarr only (netCDF is always zlib). ``zfp`` is lossy with absolute ``tolerance``.
    dim : str, optional
        Dimension of neighbours for the information (default: the most bits over the spatial and time dims).
    report : bool
        Measure errors and sizes and record them in the attributes (reads the result back once).

    Returns
    -------
    dict
        The ``atmos_compression`` record (also in the attributes).
    """
    information = check_information(information)
    path = Path(path)
    is_nc = path.suffix in (".nc", ".nc4", ".netcdf")
    if is_nc and codec != "blosc":
        raise ConfigError(f"codec {codec!r} is for zarr stores; netCDF output ({path.name}) is zlib. Write a .zarr.")
    src = ds.compute() if report or information is not None else ds
    out, bits, kept = (src, {}, {})
    if information is not None:
        out, bits, kept = round_dataset(src, information, dim=dim)
    meta: dict[str, Any] = {
        "codec": "netcdf4 zlib level 4 + shuffle" if is_nc else (
            LOSSLESS_LABEL if codec == "blosc"
            else f"zarr {codec}" + (f" tolerance {_tol_label(tolerance)}" if codec == "zfp" else "")),
        "information": information,
        "method": "bitround (bitwise real information, Kloewer et al. 2021)" if information is not None else (
            "zfp fixed accuracy" if codec == "zfp" else "lossless"),
        "information_dim": dim or "max over the spatial and time dims",
    }
    out = out.copy(deep=False)
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "atmos_compression"}
    for name in out.data_vars:
        out[name].attrs = {k: v for k, v in out[name].attrs.items() if k not in _VAR_KEYS}
    if is_nc:
        from atmos.io.write import write_netcdf

        record: dict[str, Any] = dict(meta)

        def _measure(tmp: Path) -> None:
            import netCDF4

            with xr.open_dataset(tmp) as f:
                dec = f.load()
            rep = compression_report(src, dec, bits, kept)
            size = tmp.stat().st_size
            raw = sum(r.nbytes_raw for r in rep.values()) or 1
            for r in rep.values():  # a netCDF file's size is not split by variable: share it by raw size
                r.nbytes_stored = int(round(size * r.nbytes_raw / raw))
            record.update(json.loads(_json_attrs(rep, {**meta, "file_bytes": size})))
            with netCDF4.Dataset(tmp, "a") as nc:
                nc.setncattr("atmos_compression", json.dumps(record))
                for name, r in rep.items():
                    d = r.as_dict()
                    for key in ("keepbits", "psnr_db", "max_abs_error"):
                        if d[key] is not None and not isinstance(d[key], str):
                            nc.variables[name].setncattr(f"atmos_{key}", d[key])

        write_netcdf(out, path, what=what, finalize=_measure if report else None)
        return record
    enc = zarr_encoding(out, codec, tolerance=tolerance)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
            _write_zarr(out, tmp, enc, report, src, bits, kept, meta)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        return json.loads(xr.open_zarr(str(path), consolidated=True).attrs.get("atmos_compression", json.dumps(meta)))


def _tol_label(tolerance: Any) -> str:
    if isinstance(tolerance, Mapping):
        return ", ".join(f"{k} {float(v):.3g}" for k, v in tolerance.items())
    return f"{float(tolerance):g}" if tolerance is not None else "none"


def _write_zarr(out: xr.Dataset, tmp: Path, enc: dict[str, Any], report: bool, src: xr.Dataset,
                bits: dict[str, int], kept: dict[str, float], meta: dict[str, Any]) -> None:
    """Write ``out`` to ``tmp`` and, with ``report``, measure it and record the results in its attributes."""
    import zarr

    out.attrs["atmos_compression"] = json.dumps(meta)
    out.to_zarr(str(tmp), mode="w", consolidated=True, encoding=enc, zarr_format=3)
    if not report:
        return
    dec = xr.open_zarr(str(tmp), consolidated=True).load()
    rep = compression_report(src, dec, bits, kept, store_nbytes(tmp, [str(n) for n in out.data_vars]))
    record = json.loads(_json_attrs(rep, meta))
    g = zarr.open_group(str(tmp), mode="r+")
    g.attrs.update({"atmos_compression": json.dumps(record)})
    for name, r in rep.items():
        d = r.as_dict()
        g[name].attrs.update({f"atmos_{k}": d[k] for k in ("keepbits", "psnr_db", "max_abs_error") if d[k] is not None})
    zarr.consolidate_metadata(str(tmp))


def compress(src: str | os.PathLike, dst: str | os.PathLike, *, information: float | None = None,
             codec: str = "blosc", tolerance: float | None = None, dim: str | None = None,
             variables: list[str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Recompress a Zarr store or netCDF file ``src`` into ``dst`` (see :func:`write_compressed`).

    Raises
    ------
    ConfigError
        ``dst`` exists without ``overwrite``, ``src`` is ``dst``, or a bad option.
    SourceError
        ``src`` cannot be opened.
    """
    from atmos.errors import SourceError

    information = check_information(information)
    s, d = Path(src), Path(dst)
    if s.resolve() == d.resolve():
        raise ConfigError(f"the output {str(d)!r} is the input; choose another OUT.")
    if d.exists() and not overwrite:
        raise ConfigError(f"the output {str(d)!r} already exists; pass --overwrite to replace it or choose another OUT.")
    try:
        if s.suffix in (".nc", ".nc4", ".netcdf"):
            ds = xr.open_dataset(s)
        else:
            ds = xr.open_zarr(str(s))
    except (OSError, ValueError, KeyError) as err:
        raise SourceError(f"cannot open {str(s)!r} ({err}); expected a zarr store or a netCDF file.") from err
    if variables:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ConfigError(f"variables {missing} are not in {str(s)!r}; it has {sorted(map(str, ds.data_vars))}.")
        ds = ds[variables]
    for v in ds.variables.values():
        v.encoding = {k: x for k, x in v.encoding.items() if k in ("units", "calendar", "dtype", "_FillValue")
                      or (k == "chunks")}
    return write_compressed(ds, d, information=information, codec=codec, tolerance=tolerance, dim=dim,
                            what="atmos compress")
