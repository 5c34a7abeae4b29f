"""Building blocks shared by the atmos emulators (tensor-only).

* :func:`assemble_inputs` folds history, forcings and statics into channels and
  checks the tensor contract of :mod:`atmos.models.schema`;
* :func:`earth_pad` pads a lat-lon field across the dateline and the poles;
  :func:`sphere_pad` does the same symmetric padding by one gather, for the lat-lon
  convolutions :class:`SphereConv2d` and :class:`SphereResBlock`;
* :class:`CappedGELU`, :class:`FoldedHealpixPad`, :class:`HpxConvNeXtBlock` and
  :class:`ConvGRU` are the pieces of the DLWP-HPX style U-Net, which runs
  ``Conv2d`` on HEALPix faces folded into the batch (``[B*12, C, n, n]``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atmos.errors import DataError, GridError
from atmos.models.schema import ChannelSchema

__all__ = [
    "CappedGELU",
    "ConvGRU",
    "FoldedHealpixPad",
    "HpxConvNeXtBlock",
    "SphereConv2d",
    "SphereResBlock",
    "assemble_inputs",
    "earth_pad",
    "sphere_pad",
]


# -----------------------------------------------------------------------------
# input assembly
# -----------------------------------------------------------------------------
def _check_block(
    name: str, x: torch.Tensor, batch: int, steps: int, names: list[str], grid: tuple[int, ...]
) -> None:
    expected = (batch, steps, len(names), *grid)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor shaped {list(expected)}, got {type(x).__name__}.")
    if tuple(x.shape[3:]) != grid:
        raise GridError(
            f"{name} has grid dimensions {list(x.shape[3:])} but the model is built for {list(grid)} "
            f"(full shape {list(x.shape)}, expected {list(expected)}). Regrid the data or rebuild the model."
        )
    if tuple(x.shape) != expected:
        raise DataError(
            f"{name} must be shaped [batch={batch}, steps={steps}, channels={len(names)}, *grid] "
            f"= {list(expected)}, got {list(x.shape)}. Channels expected: {names}."
        )


def assemble_inputs(
    schema: ChannelSchema,
    grid: tuple[int, ...],
    inputs: torch.Tensor,
    forcings: torch.Tensor | None,
    statics: torch.Tensor | None,
) -> torch.Tensor:
    """Fold time into channels: ``[B, history*C_in + (history+1)*C_f + C_s, *grid]``.

    Channel order: input steps oldest first (each step in ``schema.inputs`` order),
    then forcing steps oldest first (the last one is the target time), then statics.

    Parameters
    ----------
    schema : ChannelSchema
    grid : tuple of int
        Spatial shape, ``(nlat, nlon)`` or ``(12, nside, nside)``.
    inputs : torch.Tensor, shape [B, history, len(schema.inputs), *grid]
    forcings : torch.Tensor, shape [B, history + 1, len(schema.forcings), *grid], or None
        Must be given iff the schema has forcings.
    statics : torch.Tensor or None
        ``[C_s, *grid]`` (shared by the batch), ``[B, C_s, *grid]`` or
        ``[B, 1, C_s, *grid]``. Must be given iff the schema has statics.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 3 + len(grid):
        shape = list(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise DataError(
            f"inputs must be shaped [batch, history={schema.history}, channels={len(schema.inputs)}, "
            f"*{list(grid)}], got {shape}."
        )
    batch = inputs.shape[0]
    _check_block("inputs", inputs, batch, schema.history, schema.inputs, grid)
    parts = [inputs.reshape(batch, -1, *grid)]
    if schema.forcings:
        if forcings is None:
            raise DataError(
                f"the model expects forcings {schema.forcings} at {schema.history + 1} steps "
                "(the input steps and the target step) but forcings=None was passed."
            )
        _check_block("forcings", forcings, batch, schema.history + 1, schema.forcings, grid)
        parts.append(forcings.reshape(batch, -1, *grid).to(inputs.dtype))
    elif forcings is not None and forcings.numel() > 0:
        raise DataError(
            f"the model has no forcing channels but a forcings tensor of shape {list(forcings.shape)} "
            "was passed. Pass forcings=None or rebuild the model with forcings=[...]."
        )
    if schema.statics:
        if statics is None:
            raise DataError(f"the model expects statics {schema.statics} but statics=None was passed.")
        ns = len(schema.statics)
        g = len(grid)
        if statics.ndim == g + 1:
            statics = statics.unsqueeze(0)
        elif statics.ndim == g + 3 and statics.shape[1] == 1:
            statics = statics[:, 0]
        if statics.ndim != g + 2 or statics.shape[1] != ns or tuple(statics.shape[2:]) != grid:
            raise DataError(
                f"statics must be shaped [{ns}, *{list(grid)}], [batch, {ns}, *grid] or "
                f"[batch, 1, {ns}, *grid] for channels {schema.statics}; got {list(statics.shape)}."
            )
        if statics.shape[0] not in (1, batch):
            raise DataError(
                f"statics batch size {statics.shape[0]} differs from the inputs batch size {batch}."
            )
        parts.append(statics.to(inputs.dtype).expand(batch, *statics.shape[1:]))
    elif statics is not None and statics.numel() > 0:
        raise DataError(
            f"the model has no static channels but a statics tensor of shape {list(statics.shape)} "
            "was passed. Pass statics=None or rebuild the model with statics=[...]."
        )
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


# -----------------------------------------------------------------------------
# lat-lon earth padding
# -----------------------------------------------------------------------------
def earth_pad(x: torch.Tensor, pad_lat: tuple[int, int], pad_lon: tuple[int, int]) -> torch.Tensor:
    """Pad a global lat-lon field so that it stays continuous on the sphere.

    Latitude first: the ``pad_lat[0]`` rows added south of the first row are the
    first rows mirrored across the south pole (flipped in latitude and rolled by
    180 degrees in longitude), likewise ``pad_lat[1]`` rows across the north pole.
    Then longitude, circularly (the corners therefore come out right as well).
    This is CREDIT/WXFormer's "earth" padding.

    Parameters
    ----------
    x : torch.Tensor, shape [..., nlat, nlon]
        Latitude ascending; ``nlon`` even if ``pad_lat`` is non-zero.
    pad_lat : (int, int)
        Rows to add at the south (index 0) and north ends, each ``<= nlat``.
    pad_lon : (int, int)
        Columns to add at the west (index 0) and east ends, each ``<= nlon``.

    Returns
    -------
    torch.Tensor, shape [..., nlat + sum(pad_lat), nlon + sum(pad_lon)]

    Notes
    -----
    On a grid whose first/last rows are the poles themselves the pole row is
    mirrored too (so it appears twice), as in CREDIT.
    """
    nlat, nlon = x.shape[-2:]
    ps, pn = pad_lat
    pw, pe = pad_lon
    if min(ps, pn, pw, pe) < 0 or max(ps, pn) > nlat or max(pw, pe) > nlon:
        raise GridError(
            f"earth_pad needs 0 <= pad_lat <= nlat={nlat} and 0 <= pad_lon <= nlon={nlon}, "
            f"got pad_lat={pad_lat}, pad_lon={pad_lon}."
        )
    if (ps or pn) and nlon % 2:
        raise GridError(
            f"padding across the poles rolls longitude by 180 degrees and needs an even nlon, got {nlon}."
        )
    parts = []
    if ps:
        parts.append(x[..., :ps, :].flip(-2).roll(nlon // 2, dims=-1))
    parts.append(x)
    if pn:
        parts.append(x[..., nlat - pn :, :].flip(-2).roll(nlon // 2, dims=-1))
    x = torch.cat(parts, dim=-2) if len(parts) > 1 else x
    parts = []
    if pw:
        parts.append(x[..., nlon - pw :])
    parts.append(x)
    if pe:
        parts.append(x[..., :pe])
    return torch.cat(parts, dim=-1) if len(parts) > 1 else x


# -----------------------------------------------------------------------------
# activations
# -----------------------------------------------------------------------------
# -----------------------------------------------------------------------------
# spherical padding by one gather (lat-lon convolutions)
# -----------------------------------------------------------------------------
def _pad_index(nlat: int, nlon: int, p: int) -> torch.Tensor:
    """Flat source index ``[(nlat + 2p) * (nlon + 2p)]`` of every cell of the padded array."""
    rows = torch.arange(-p, nlat + p)
    cols = torch.arange(-p, nlon + p) % nlon
    r, c = torch.meshgrid(rows, cols, indexing="ij")
    if nlon % 2 == 0:
        over = (r < 0) | (r >= nlat)
        c = torch.where(over, (c + nlon // 2) % nlon, c)
        r = torch.where(r < 0, -1 - r, torch.where(r >= nlat, 2 * nlat - 1 - r, r))
    else:
        r = r.clamp(0, nlat - 1)
    return (r * nlon + c).flatten()


_PAD_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def sphere_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Pad ``[..., nlat, nlon]`` by ``p`` cells on each side, spherically.

    Longitude is periodic; beyond each pole, row ``k`` past the edge is edge row ``k``
    rolled by half the longitudes (the same latitude on the opposite meridian). An
    odd ``nlon`` falls back to repeating the edge rows. One gather (cheap in backward
    too).
    """
    if p == 0:
        return x
    nlat, nlon = x.shape[-2:]
    if p > nlat:
        raise GridError(f"cannot pad {nlat} latitudes by {p} rows across the poles.")
    key = (nlat, nlon, p)
    if key not in _PAD_CACHE:
        _PAD_CACHE[key] = _pad_index(nlat, nlon, p)
    idx = _PAD_CACHE[key].to(x.device)
    return x.flatten(-2).index_select(-1, idx).view(*x.shape[:-2], nlat + 2 * p, nlon + 2 * p)


class SphereConv2d(nn.Conv2d):
    """3x3 (or kxk, k odd) convolution with :func:`sphere_pad` instead of zero padding."""

    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__(cin, cout, k, padding=0)
        self.p = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(sphere_pad(x, self.p))


class SphereResBlock(nn.Module):
    """``x + conv(gelu(conv(gelu(x))))`` with two 3x3 :class:`SphereConv2d` of width ``ch``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = SphereConv2d(ch, ch)
        self.c2 = SphereConv2d(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.gelu(self.c1(F.gelu(x))))



class CappedGELU(nn.Module):
    """``min(GELU(x), cap)`` (DLWP-HPX's activation, cap 10)."""

    def __init__(self, cap: float = 10.0) -> None:
        super().__init__()
        self.cap = float(cap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x).clamp_(max=self.cap)

    def extra_repr(self) -> str:
        return f"cap={self.cap}"


# -----------------------------------------------------------------------------
# HEALPix padding on the folded [B*12, C, n, n] layout
# -----------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _folded_tables(nside: int, pad: int) -> dict[str, np.ndarray] | None:
    """Gather tables of :func:`atmos.grids.padding.healpix_pad`, split into (face, pixel).

    The tables are read off the public ``healpix_pad`` itself by padding two probe
    fields, ``k`` and ``k**2`` with ``k`` the flat cell index: a halo cell that copies
    pixel ``a`` returns ``(a, a**2)``; one that averages pixels ``a`` and ``b`` returns
    their two means, from which ``a`` and ``b`` follow. Both are checked exactly, so any
    other rule in ``healpix_pad`` returns ``None`` (and the caller falls back to it).
    """
    from atmos.grids.padding import healpix_pad

    n, p = nside, pad
    m = n + 2 * p
    k = torch.arange(12 * n * n, dtype=torch.float64).reshape(12, n, n)
    s1 = healpix_pad(k, p).reshape(12, m * m).numpy()
    s2 = healpix_pad(k * k, p).reshape(12, m * m).numpy()
    half = np.sqrt(np.clip(s2 - s1 * s1, 0.0, None))
    a = np.rint(s1 - half).astype(np.int64)
    b = np.rint(s1 + half).astype(np.int64)
    ok = (
        (a >= 0).all()
        and (b < 12 * n * n).all()
        and np.array_equal(0.5 * (a + b), s1)
        and np.array_equal(0.5 * (a.astype(np.float64) ** 2 + b.astype(np.float64) ** 2), s2)
    )
    inner = np.zeros((m, m), dtype=bool)
    inner[p : p + n, p : p + n] = True
    if not ok or not np.array_equal(a[:, inner.ravel()].ravel(), np.arange(12 * n * n)):
        return None
    halo = np.flatnonzero(~inner)
    dst_f = np.repeat(np.arange(12), halo.size)
    dst_p = np.tile(halo, 12)
    src_a = a[dst_f, dst_p]
    src_b = b[dst_f, dst_p]
    avg = np.flatnonzero(src_a != src_b)
    return {
        "dst_f": dst_f,
        "dst_p": dst_p,
        "src_f": src_a // (n * n),
        "src_p": src_a % (n * n),
        "avg_slot": avg,
        "avg_f": src_b[avg] // (n * n),
        "avg_p": src_b[avg] % (n * n),
    }


def _halo_values(x5: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Halo values ``[n_halo, B, C]`` gathered from ``x5`` ``[B, 12, C, n*n]``."""
    vals = x5[:, t["src_f"], :, t["src_p"]]
    if t["avg_slot"].numel():
        a = vals.index_select(0, t["avg_slot"])
        b = x5[:, t["avg_f"], :, t["avg_p"]]
        vals.index_copy_(0, t["avg_slot"], 0.5 * (a + b))
    return vals


class _FoldedPad(torch.autograd.Function):
    """Forward: centre copy + halo gather/scatter. Backward: centre slice + halo scatter-add.

    A custom backward avoids the full-size zero tensors that autograd would create
    for each advanced-indexing gather.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int, tables: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        bf, c, n, _ = x.shape
        b, m = bf // 12, n + 2 * pad
        x = x.contiguous()
        out = x.new_empty(bf, c, m, m)
        out[:, :, pad : pad + n, pad : pad + n] = x
        torch.ops.aten.index_put_(
            out.view(b, 12, c, m * m),
            [None, tables["dst_f"], None, tables["dst_p"]],
            _halo_values(x.view(b, 12, c, n * n), tables),
            False,
        )
        ctx.pad, ctx.tables, ctx.n = pad, tables, n
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        p, t, n = ctx.pad, ctx.tables, ctx.n
        bf, c, m, _ = grad.shape
        b = bf // 12
        grad = grad.contiguous()
        gx = grad[:, :, p : p + n, p : p + n].contiguous()
        g_halo = grad.view(b, 12, c, m * m)[:, t["dst_f"], :, t["dst_p"]]  # [n_halo, B, C]
        gx5 = gx.view(b, 12, c, n * n)
        if t["avg_slot"].numel():
            g_avg = 0.5 * g_halo.index_select(0, t["avg_slot"])
            g_halo.index_copy_(0, t["avg_slot"], g_avg)
            torch.ops.aten.index_put_(gx5, [None, t["avg_f"], None, t["avg_p"]], g_avg, True)
        torch.ops.aten.index_put_(gx5, [None, t["src_f"], None, t["src_p"]], g_halo, True)
        return gx, None, None


class FoldedHealpixPad(nn.Module):
    """HEALPix halo padding for faces folded into the batch, ``[B*12, C, n, n]``.

    Same values as :func:`atmos.grids.padding.healpix_pad` on the unfolded
    ``[B, C, 12, n, n]`` tensor (whose index tables it reuses, see
    :func:`_folded_tables`), without permute copies: the centre is one strided copy
    and the halo one gather + one scatter over the (face, pixel) pairs of the
    ``[B, 12, C, n*n]`` view. The backward pass is the matching slice + scatter-add.

    Parameters
    ----------
    nside : int
        Face size ``n``.
    pad : int
        Halo width, ``1 <= pad <= nside``.

    Forward
    -------
    x : torch.Tensor, shape [B*12, C, nside, nside]
        Returns ``[B*12, C, nside + 2*pad, nside + 2*pad]``.
    """

    def __init__(self, nside: int, pad: int) -> None:
        super().__init__()
        self.nside = int(nside)
        self.pad = int(pad)
        tables = _folded_tables(self.nside, self.pad)
        self.fast = tables is not None
        self._keys = tuple(tables) if tables is not None else ()
        if tables is not None:
            for key, val in tables.items():
                self.register_buffer(key, torch.as_tensor(val, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf, c, h, w = x.shape
        if bf % 12 or h != self.nside or w != self.nside:
            raise GridError(
                f"FoldedHealpixPad(nside={self.nside}) expects [B*12, C, {self.nside}, {self.nside}], "
                f"got {list(x.shape)}."
            )
        if not self.fast:
            from atmos.grids.padding import healpix_pad

            b, n, p = bf // 12, self.nside, self.pad
            y = healpix_pad(x.reshape(b, 12, c, n, n).transpose(1, 2), p)
            return y.transpose(1, 2).reshape(bf, c, n + 2 * p, n + 2 * p)
        return _FoldedPad.apply(x, self.pad, {k: getattr(self, k) for k in self._keys})

    def extra_repr(self) -> str:
        return f"nside={self.nside}, pad={self.pad}"


class HpxConv2d(nn.Module):
    """HEALPix-padded ``Conv2d`` on folded faces (``padding=0`` after the halo)."""

    def __init__(
        self, nside: int, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
    ) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2 * dilation
        self.pad = FoldedHealpixPad(nside, pad) if pad > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, dilation=dilation, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class HpxConvNeXtBlock(nn.Module):
    """DLWP-HPX ConvNeXt block on folded HEALPix faces.

    ``skip(x) + conv1x1(act(conv_kxk(act(conv_kxk(x)))))`` with the two ``k x k``
    convolutions going ``in -> latent*upscale -> latent*upscale`` (dilated, HEALPix
    padded) and ``skip`` a 1x1 convolution when ``in != out`` (identity otherwise).

    Forward
    -------
    x : [B*12, in_channels, nside, nside] -> [B*12, out_channels, nside, nside]
    """

    def __init__(
        self,
        nside: int,
        in_channels: int,
        latent_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        upscale_factor: int = 4,
        cap: float = 10.0,
    ) -> None:
        super().__init__()
        wide = int(latent_channels * upscale_factor)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.conv1 = HpxConv2d(nside, in_channels, wide, kernel_size, dilation)
        self.conv2 = HpxConv2d(nside, wide, wide, kernel_size, dilation)
        self.conv3 = nn.Conv2d(wide, out_channels, 1)
        self.act = CappedGELU(cap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class ConvGRU(nn.Module):
    """Convolutional GRU with 1x1 kernels whose state is passed explicitly.

    ``r, u = sigmoid(W_g [x, h])``; ``c = tanh(W_c [x, r*h])``;
    ``h' = (1 - u) * h + u * c``; returns ``(x + h', h')`` (DLWP-HPX's block output).

    Forward
    -------
    x : [N, C, H, W]; h : [N, C, H, W] or None (zeros) -> ``(x + h', h')``
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.candidate = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if h is None:
            h = torch.zeros_like(x)
        elif h.shape != x.shape:
            raise DataError(
                f"GRU state has shape {list(h.shape)} but this level's activations are {list(x.shape)}; "
                "pass state=None to start a new sequence (e.g. after changing the batch size)."
            )
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        h_new = h + u * (c - h)
        return x + h_new, h_new
