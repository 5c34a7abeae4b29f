"""Halo padding of HEALPix tensors in the 12-face layout.

``healpix_pad`` turns ``[..., 12, nside, nside]`` into
``[..., 12, nside + 2p, nside + 2p]`` so that ordinary 2-D convolutions can run on
each base face as if the sphere were flat around it (the DLWP-HPX / PhysicsNeMo
``HEALPixPadding`` operation). The face layout is the one of
:mod:`atmos.grids.healpix`: element ``[f, r, c]`` is the pixel with base-cell
coordinates ``x = nside-1-r``, ``y = nside-1-c`` on base cell ``f``.

Geometry of the halo
--------------------
Every halo cell outside the three-face corner blocks (below) holds the value of a
real pixel:

* **Edge strips** (one of ``x``, ``y`` outside ``[0, nside)``): the face's local
  ``(x, y)`` grid is continued straight across the edge into the neighbouring base
  cell. The HEALPix grids of two base cells sharing an edge join seamlessly, so
  the continuation is an integer rotation + translation from the face's
  coordinates to the neighbour's. For ``pad=1`` the halo cell next to ``[f, r, c]``
  in direction ``(dx, dy)`` is exactly the HEALPix neighbour of that pixel in that
  direction (``healpix_geo.nested.neighbours``); for ``pad > 1`` the cell at
  distance ``k`` is the pixel ``k`` steps away along the same grid line.
* **Corner blocks at four-face vertices** (both ``x`` and ``y`` outside; the
  equator vertices and the poles): the grid is regular around such a vertex, so
  the block is the diagonal base cell's grid continued the same way (reaching it
  across either adjacent face gives the same pixel; this is checked when the
  table is built).
* **Corner blocks at three-face vertices** (the 8 vertices at latitude
  +-41.8 deg, where only three base cells meet; each is a corner of 3 faces, so
  24 face corners have such a block): these halo cells have no pixel. With
  ``a`` (``b``) the distance of a cell beyond the face edge on the ``x`` (``y``)
  side, ``1 <= a, b <= p``, and ``H(a, b)`` the halo cell at those distances
  (``b <= 0`` or ``a <= 0`` meaning inside the face's range, i.e. in an edge
  strip), the **corner rule** is::

      a > b :  H(a, b) = H(a, b - a + 1)                 (copy from the x-side strip)
      a < b :  H(a, b) = H(a - b + 1, b)                 (copy from the y-side strip)
      a == b:  H(a, a) = 0.5 * H(a, 0) + 0.5 * H(0, a)   (mean of the two strips)

  For ``pad=1`` this is the single corner cell set to the mean of its two
  adjacent halo values. The missing quadrant is split along its diagonal, each
  half filled with the near-vertex triangle of the adjacent face sheared so that
  the seam between the two other faces lies on the diagonal. This is exactly the
  rule DLWP-HPX / PhysicsNeMo ``HEALPixPadding`` applies on the equatorial faces
  (its ``tl``/``br`` helpers); on the polar faces PhysicsNeMo instead copies a
  block of one neighbour, which atmos does not reproduce so that all 24 such
  corners follow one symmetric rule.

Implementation
--------------
The source position (in the flattened ``[12 * nside * nside]`` input) of every
halo cell is computed once per ``(nside, pad)`` with numpy and ``healpix_geo``
(neighbours and base-cell coordinates) and cached. The forward pass copies the
faces into the centre of a new output tensor (one strided copy), gathers all halo
values with one ``torch.gather`` on the flattened cell axis, ordered so that they
land in the output with four slice copies (top rows, bottom rows, left and right
columns); the diagonal cells of the three-face corner blocks are set by a second,
tiny gather. The backward pass is the exact adjoint (centre copy + one
``index_add`` of the halo gradients), written in torch ops so that double
backward works. Everything is plain torch indexing: any floating dtype, any
device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from healpix_geo import nested as hg_nested

from atmos.errors import GridError
from atmos.grids.healpix import _check_nside

__all__ = ["HealpixPad", "healpix_pad", "healpix_pad_indices", "healpix_unpad"]

# (dx, dy) step in base-cell coordinates -> column of
# healpix_geo.nested.neighbours(..., connectivity="all") (order S,SW,W,NW,N,NE,E,SE).
_DIR_COLUMN = {
    (-1, -1): 0,
    (-1, 0): 1,
    (-1, 1): 2,
    (0, 1): 3,
    (1, 1): 4,
    (1, 0): 5,
    (1, -1): 6,
    (0, -1): 7,
}
# Outward normals of the four edges of a base cell, in (x, y).
_EDGES = ((1, 0), (-1, 0), (0, 1), (0, -1))


# -----------------------------------------------------------------------------
# index-table construction (numpy + healpix-geo, once per (nside, pad))
# -----------------------------------------------------------------------------
def _depth(nside: int) -> int:
    return int(nside).bit_length() - 1


def _to_ids(f: np.ndarray, x: np.ndarray, y: np.ndarray, nside: int) -> np.ndarray:
    ids = hg_nested.base_cell_coordinates_to_healpix(
        np.asarray(f, dtype=np.uint8),
        np.asarray(x, dtype=np.uint32),
        np.asarray(y, dtype=np.uint32),
        _depth(nside),
    )
    return np.asarray(ids, dtype=np.uint64)


def _to_fxy(ids: np.ndarray, nside: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, x, y = hg_nested.healpix_to_base_cell_coordinates(np.asarray(ids, dtype=np.uint64), _depth(nside))
    return np.asarray(f, np.int64), np.asarray(x, np.int64), np.asarray(y, np.int64)


def _neighbour(f: np.ndarray, x: np.ndarray, y: np.ndarray, step: tuple[int, int], nside: int) -> np.ndarray:
    """Nested id of the neighbour in direction ``step`` of pixels (f, x, y); -1 if none."""
    nb = hg_nested.neighbours(_to_ids(f, x, y, nside), _depth(nside), connectivity="all")
    return np.asarray(nb, dtype=np.int64)[:, _DIR_COLUMN[step]]


def _edge_pixels(edge: tuple[int, int], nside: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-face pixels along ``edge`` (x, y arrays) and the unit vector along it."""
    k = np.arange(nside)
    last = np.full(nside, nside - 1)
    first = np.zeros(nside, dtype=np.int64)
    if edge[0] != 0:
        return (last if edge[0] > 0 else first), k, np.array([0, 1])
    return k, (last if edge[1] > 0 else first), np.array([1, 0])


@lru_cache(maxsize=1)
def _edge_rotations() -> dict[tuple[int, tuple[int, int]], tuple[int, np.ndarray]]:
    """Neighbouring base cell and grid rotation across each edge of each base cell.

    Derived at nside=2 (two pixels per edge fix the rotation; it does not depend
    on the resolution). Returns ``{(face, edge): (neighbour_face, R)}`` where the
    2x2 integer matrix ``R`` maps steps in the face's ``(x, y)`` to steps in the
    neighbour's.
    """
    nside = 2
    out = {}
    for f in range(12):
        for edge in _EDGES:
            ex, ey, along = _edge_pixels(edge, nside)
            fs = np.full(nside, f)
            g, qx, qy = _to_fxy(_neighbour(fs, ex, ey, edge, nside), nside)
            if len(set(g.tolist())) != 1:  # pragma: no cover - HEALPix invariant
                raise RuntimeError(f"edge {edge} of base cell {f} touches several base cells {set(g)}")
            q0 = np.array([qx[0], qy[0]])
            v = np.array([qx[1], qy[1]]) - q0  # R @ along
            normal = np.array(edge)
            w = None  # R @ normal: perpendicular to v, pointing out of the neighbour's square
            for cand in (np.array([-v[1], v[0]]), np.array([v[1], -v[0]])):
                back = q0 - cand  # image of the in-face edge pixel, must lie outside
                if not ((0 <= back) & (back < nside)).all():
                    w = cand if w is None else None
            if w is None or abs(v).sum() != 1:  # pragma: no cover - HEALPix invariant
                raise RuntimeError(f"cannot derive the grid rotation across edge {edge} of base cell {f}")
            rot = np.zeros((2, 2), dtype=np.int64)
            rot[:, np.flatnonzero(along)[0]] = v * along.sum()
            rot[:, np.flatnonzero(normal)[0]] = w * normal.sum()
            out[(f, edge)] = (int(g[0]), rot)
    return out


@lru_cache(maxsize=16)
def _edge_maps(nside: int) -> dict[tuple[int, tuple[int, int]], tuple[int, np.ndarray, np.ndarray]]:
    """``{(face, edge): (g, R, t)}``: pixel (x, y) of ``face`` continued across ``edge``
    is pixel ``R @ (x, y) + t`` of base cell ``g``. Checked on every edge pixel."""
    out = {}
    for (f, edge), (g, rot) in _edge_rotations().items():
        ex, ey, _ = _edge_pixels(edge, nside)
        fs = np.full(nside, f)
        gg, qx, qy = _to_fxy(_neighbour(fs, ex, ey, edge, nside), nside)
        src = np.stack([ex + edge[0], ey + edge[1]])  # [2, nside] points just outside the face
        t = np.array([qx[0], qy[0]]) - rot @ src[:, 0]
        pred = rot @ src + t[:, None]
        if (gg != g).any() or (pred != np.stack([qx, qy])).any():  # pragma: no cover
            raise RuntimeError(f"HEALPix grid continuation across edge {edge} of base cell {f} is not affine")
        out[(f, edge)] = (g, rot, t)
    return out


def _inside(x: np.ndarray, y: np.ndarray, nside: int) -> np.ndarray:
    return (x >= 0) & (x < nside) & (y >= 0) & (y < nside)


def _continue(f: int, x: np.ndarray, y: np.ndarray, nside: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map points of face ``f``'s extended grid lying in one edge strip to real pixels."""
    g_out = np.full(x.shape, -1, dtype=np.int64)
    x_out = np.empty_like(x)
    y_out = np.empty_like(y)
    maps = _edge_maps(nside)
    for edge in _EDGES:
        if edge[0] > 0:
            sel = x >= nside
        elif edge[0] < 0:
            sel = x < 0
        elif edge[1] > 0:
            sel = y >= nside
        else:
            sel = y < 0
        if not sel.any():
            continue
        g, rot, t = maps[(f, edge)]
        pts = rot @ np.stack([x[sel], y[sel]]) + t[:, None]
        g_out[sel], x_out[sel], y_out[sel] = g, pts[0], pts[1]
    return g_out, x_out, y_out


@dataclass(frozen=True)
class _PadTable:
    """Precomputed gather indices for one ``(nside, pad)``.

    All positions are flat indices: into the input ``[12 * n * n]`` (``src_*``) or
    the padded output ``[12 * m * m]`` with ``m = n + 2 * pad`` (``*_dst``).
    """

    nside: int
    pad: int
    src: np.ndarray  # [12, m, m] source of every output cell (first source at averaged cells)
    halo_dst: np.ndarray  # [nh] output positions of the halo cells (top, bottom, left, right blocks)
    halo_src: np.ndarray  # [nh] their source positions
    avg_dst: np.ndarray  # [na] output positions of the averaged (three-face corner diagonal) cells
    avg_src_a: np.ndarray  # [na] input position of the first source H(a, 0) of each averaged cell
    avg_src_b: np.ndarray  # [na] input position of the second source H(0, a)
    avg_slot: np.ndarray  # [na] position of each averaged cell within halo_dst
    avg_slot_a: np.ndarray  # [na] position of H(a, 0) (itself a halo cell) within halo_dst
    avg_slot_b: np.ndarray  # [na] position of H(0, a) within halo_dst


@lru_cache(maxsize=32)
def _pad_table(nside: int, pad: int) -> _PadTable:
    n, p = nside, pad
    m = n + 2 * p
    rr, cc = np.meshgrid(np.arange(-p, n + p), np.arange(-p, n + p), indexing="ij")
    x_all = n - 1 - rr  # local base-cell coordinates of every padded position
    y_all = n - 1 - cc
    maps = _edge_maps(n)

    def flat(g: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return g * n * n + (n - 1 - x) * n + (n - 1 - y)

    src = np.empty((12, m, m), dtype=np.int64)
    avg_dst, avg_a, avg_b = [], [], []  # output positions of H(a, a), H(a, 0), H(0, a)
    for f in range(12):
        x, y = x_all.copy(), y_all.copy()
        xo = (x < 0) | (x >= n)
        yo = (y < 0) | (y >= n)
        g = np.full((m, m), f, dtype=np.int64)
        gx, gy = x.copy(), y.copy()

        # edge strips: continue the grid across the edge
        strip = xo ^ yo
        g[strip], gx[strip], gy[strip] = _continue(f, x[strip], y[strip], n)

        # corner blocks
        for sx in (1, -1):
            for sy in (1, -1):
                xc = n - 1 if sx > 0 else 0
                yc = n - 1 if sy > 0 else 0
                blk = (sx * (x - xc) >= 1) & (sy * (y - yc) >= 1)
                a = sx * (x[blk] - xc)  # distance beyond the x-side edge, 1..p
                b = sy * (y[blk] - yc)  # distance beyond the y-side edge, 1..p
                diag_nb = _neighbour(np.array([f]), np.array([xc]), np.array([yc]), (sx, sy), n)[0]
                if diag_nb >= 0:
                    # four-face vertex: go across the x-side edge, then across the edge of
                    # that face which the point lies beyond; check against the other path.
                    paths = []
                    for first in ((sx, 0), (0, sy)):
                        g1, rot, t = maps[(f, first)]
                        q = rot @ np.stack([x[blk], y[blk]]) + t[:, None]
                        g2, qx, qy = _continue(g1, q[0], q[1], n)
                        paths.append((g2, qx, qy))
                    (g2, qx, qy), (h2, hx, hy) = paths
                    ok = (
                        (g2 == h2).all()
                        and (qx == hx).all()
                        and (qy == hy).all()
                        and _inside(qx, qy, n).all()
                        and (g2[:1] == _to_fxy(np.array([diag_nb]), n)[0]).all()
                    )
                    if not ok:  # pragma: no cover - HEALPix invariant
                        raise RuntimeError(f"inconsistent four-face corner ({sx}, {sy}) of base cell {f}")
                    g[blk], gx[blk], gy[blk] = g2, qx, qy
                else:
                    # three-face vertex: corner rule (see module docstring)
                    ra = np.where(a > b, a, np.where(a < b, a - b + 1, a))
                    rb = np.where(a > b, b - a + 1, np.where(a < b, b, 0))
                    px, py = xc + sx * ra, yc + sy * rb
                    g[blk], gx[blk], gy[blk] = _continue(f, px, py, n)
                    # the diagonal cells H(a, a) average H(a, 0) and H(0, a)
                    rows, cols = np.nonzero(blk)
                    diag = a == b
                    ad = a[diag]
                    avg_dst.append(f * m * m + rows[diag] * m + cols[diag])
                    avg_a.append(f * m * m + (p + n - 1 - (xc + sx * ad)) * m + (p + n - 1 - yc))
                    avg_b.append(f * m * m + (p + n - 1 - xc) * m + (p + n - 1 - (yc + sy * ad)))
        if not ((g >= 0) & _inside(gx, gy, n)).all():  # pragma: no cover
            raise RuntimeError(f"padding table for base cell {f} has cells outside the sphere")
        src[f] = flat(g, gx, gy)

    # halo cells in four blocks that map onto plain slices of the output:
    # top rows [12, p, m], bottom rows [12, p, m], left columns [12, n, p], right columns [12, n, p]
    pos = np.arange(12 * m * m).reshape(12, m, m)
    blocks = (pos[:, :p, :], pos[:, n + p :, :], pos[:, p : p + n, :p], pos[:, p : p + n, n + p :])
    halo_dst = np.concatenate([blk.ravel() for blk in blocks])
    src_flat = src.ravel()
    avg_dst, avg_a, avg_b = (np.concatenate(v) for v in (avg_dst, avg_a, avg_b))
    slot_of = np.full(12 * m * m, -1, dtype=np.int64)
    slot_of[halo_dst] = np.arange(halo_dst.size)
    table = _PadTable(
        nside=n,
        pad=p,
        src=src,
        halo_dst=halo_dst,
        halo_src=src_flat[halo_dst],
        avg_dst=avg_dst,
        avg_src_a=src_flat[avg_a],
        avg_src_b=src_flat[avg_b],
        avg_slot=slot_of[avg_dst],
        avg_slot_a=slot_of[avg_a],
        avg_slot_b=slot_of[avg_b],
    )
    for name in table.__dataclass_fields__:
        if isinstance(arr := getattr(table, name), np.ndarray):
            arr.setflags(write=False)
    if min(table.avg_slot.min(), table.avg_slot_a.min(), table.avg_slot_b.min()) < 0:  # pragma: no cover
        raise RuntimeError("averaged corner cells must take their values from halo cells")
    return table


def healpix_pad_indices(nside: int, pad: int) -> dict[str, np.ndarray]:
    """The gather tables behind :func:`healpix_pad` (fresh copies of the cached ones).

    For building the same padding on another layout (e.g. faces folded into the
    batch). With ``m = nside + 2*pad``, ``x`` flattened to ``[..., 12*nside*nside]``
    and ``out`` to ``[..., 12*m*m]``::

        out = x[..., src.ravel()]
        out[..., avg_dst] = 0.5 * (x[..., avg_src_a] + x[..., avg_src_b])

    Returns
    -------
    dict of numpy.ndarray (int64)
        ``src`` [12, m, m]: input position of every output cell (for averaged cells
        the first of their two sources); ``avg_dst`` [na]: flat output positions of
        the averaged cells (diagonals of the three-face corner blocks, ``na = 24*pad``);
        ``avg_src_a``, ``avg_src_b`` [na]: their two input positions.
    """
    nside = _check_nside(nside)
    pad = _check_pad(pad, nside)
    t = _pad_table(nside, pad)
    return {k: getattr(t, k).copy() for k in ("src", "avg_dst", "avg_src_a", "avg_src_b")}


# -----------------------------------------------------------------------------
# torch forward
# -----------------------------------------------------------------------------
_BUFFERS = ("halo_src", "avg_slot", "avg_slot_a", "avg_slot_b")


@lru_cache(maxsize=64)
def _device_buffers(nside: int, pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    t = _pad_table(nside, pad)
    return {k: torch.as_tensor(np.array(getattr(t, k)), dtype=torch.int64, device=device) for k in _BUFFERS}


def _check_pad(pad: Any, nside: int) -> int:
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or not 1 <= pad <= nside:
        raise GridError(
            f"pad must be an integer between 1 and nside={nside}, got {pad!r}. "
            "Use the halo width your convolution needs, e.g. pad=kernel_size // 2."
        )
    return int(pad)


def _check_faces(x: Any, what: str = "x") -> int:
    """Validate a ``[..., 12, n, n]`` tensor and return ``n``."""
    if not isinstance(x, torch.Tensor):
        raise GridError(f"{what} must be a torch.Tensor shaped [..., 12, n, n], got {type(x).__name__}.")
    shape = tuple(x.shape)
    if x.ndim < 3 or shape[-3] != 12 or shape[-2] != shape[-1]:
        raise GridError(
            f"{what} must be shaped [..., 12, n, n] (12 square HEALPix base faces), got {shape}. "
            "Convert a cell vector with HealpixGrid(nside).cells_to_faces(x); a DLWP-style folded "
            "[B*12, C, n, n] tensor becomes [B, C, 12, n, n] with x.view(B, 12, C, n, n).transpose(1, 2)."
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise GridError(f"{what} must have a floating-point dtype, got {x.dtype}. Use x.float() first.")
    _check_face_size(shape[-1], shape)
    return shape[-1]


def _check_face_size(n: int, shape: tuple[int, ...]) -> int:
    try:
        return _check_nside(n)
    except GridError as exc:
        raise GridError(f"faces of size {n} (tensor shape {shape}) are not a HEALPix grid: {exc}") from None


def _halo_blocks(n: int, p: int) -> list[int]:
    """Sizes of the top, bottom, left and right halo blocks on the flat halo axis."""
    m = n + 2 * p
    return [12 * p * m, 12 * p * m, 12 * n * p, 12 * n * p]


def _pad_forward(x2: torch.Tensor, n: int, p: int, buf: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[N, 12*n*n]`` -> ``[N, 12, m, m]``; no autograd (see :class:`_HealpixPadFn`)."""
    rows, m = x2.shape[0], n + 2 * p
    # every halo value with one index_select on the flat cell axis; the diagonal cells of the
    # three-face corner blocks are then overwritten by the mean of two (halo) cells
    halo = x2.index_select(1, buf["halo_src"])  # faster than gather, which reads the index once per row
    mean = 0.5 * (halo.index_select(1, buf["avg_slot_a"]) + halo.index_select(1, buf["avg_slot_b"]))
    halo.index_copy_(1, buf["avg_slot"], mean)
    top, bottom, left, right = halo.split(_halo_blocks(n, p), dim=1)
    # centre and the four halo blocks are plain slice copies (every cell is written)
    out = x2.new_empty((rows, 12, m, m))
    out[:, :, p : p + n, p : p + n] = x2.view(rows, 12, n, n)
    out[:, :, :p, :] = top.view(rows, 12, p, m)
    out[:, :, n + p :, :] = bottom.view(rows, 12, p, m)
    out[:, :, p : p + n, :p] = left.view(rows, 12, n, p)
    out[:, :, p : p + n, n + p :] = right.view(rows, 12, n, p)
    return out


def _pad_backward(g: torch.Tensor, n: int, p: int, buf: dict[str, torch.Tensor]) -> torch.Tensor:
    """Adjoint of :func:`_pad_forward`: ``[N, 12, m, m]`` -> ``[N, 12*n*n]``.

    Written with differentiable torch ops, so double backward works too.
    """
    rows = g.shape[0]
    grad = g[:, :, p : p + n, p : p + n].reshape(rows, 12 * n * n).clone()  # centre
    g_halo = torch.cat(
        [
            g[:, :, :p, :].reshape(rows, -1),
            g[:, :, n + p :, :].reshape(rows, -1),
            g[:, :, p : p + n, :p].reshape(rows, -1),
            g[:, :, p : p + n, n + p :].reshape(rows, -1),
        ],
        dim=1,
    )
    g_mean = 0.5 * g_halo.index_select(1, buf["avg_slot"])
    g_halo = g_halo.index_fill(1, buf["avg_slot"], 0)
    g_halo = g_halo.index_add(1, buf["avg_slot_a"], g_mean).index_add(1, buf["avg_slot_b"], g_mean)
    return grad.index_add(1, buf["halo_src"], g_halo)


class _HealpixPadFn(torch.autograd.Function):
    """Autograd wrapper: the adjoint is one strided copy plus a small scatter-add,
    instead of the chain of full-size clones autograd would record for the forward's
    in-place slice writes."""

    @staticmethod
    def forward(ctx, x2, n, p, *bufs):  # type: ignore[override]
        buf = dict(zip(_BUFFERS, bufs))
        ctx.n, ctx.p = n, p
        ctx.save_for_backward(*bufs)
        return _pad_forward(x2, n, p, buf)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        buf = dict(zip(_BUFFERS, ctx.saved_tensors))
        return (_pad_backward(g, ctx.n, ctx.p, buf), None, None) + (None,) * len(_BUFFERS)


def _pad_impl(x: torch.Tensor, pad: int, buf: dict[str, torch.Tensor]) -> torch.Tensor:
    n = x.shape[-1]
    m = n + 2 * pad
    x2 = x.reshape(-1, 12 * n * n)  # [N, 12*n*n]; copies only if x is not contiguous
    out = _HealpixPadFn.apply(x2, n, pad, *(buf[k] for k in _BUFFERS))
    return out.view(*x.shape[:-3], 12, m, m)


def healpix_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad every HEALPix base face with a halo taken from its neighbouring faces.

    Parameters
    ----------
    x : torch.Tensor, shape [..., 12, n, n]
        Data in the 12-face layout of :mod:`atmos.grids.healpix` (any number of
        leading dimensions, any floating dtype and device); ``n`` is nside.
    pad : int
        Halo width, ``1 <= pad <= n``.

    Returns
    -------
    torch.Tensor, shape [..., 12, n + 2*pad, n + 2*pad]
        ``out[..., pad:-pad, pad:-pad] == x``; halo cells hold the geometrically
        neighbouring pixels (see the module docstring for the rule at the 8
        vertices where only three faces meet). Differentiable.

    Raises
    ------
    GridError
        If ``x`` is not ``[..., 12, n, n]`` with ``n`` a power of two, or ``pad``
        is not an integer in ``[1, n]``.
    """
    nside = _check_faces(x)
    pad = _check_pad(pad, nside)
    return _pad_impl(x, pad, _device_buffers(nside, pad, x.device))


def healpix_unpad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop the halo added by :func:`healpix_pad`.

    Parameters
    ----------
    x : torch.Tensor, shape [..., 12, n + 2*pad, n + 2*pad]
    pad : int
        Halo width to remove.

    Returns
    -------
    torch.Tensor, shape [..., 12, n, n]
        A view of ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.shape[-3] != 12 or x.shape[-2] != x.shape[-1]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise GridError(f"x must be a torch.Tensor shaped [..., 12, m, m] (padded faces), got {shape}.")
    m = x.shape[-1]
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 1 or m - 2 * pad < 1:
        raise GridError(f"pad must be an integer with 1 <= pad < {m}/2 for faces of size {m}, got {pad!r}.")
    _check_face_size(m - 2 * pad, tuple(x.shape))
    return x[..., pad : m - pad, pad : m - pad]


class HealpixPad(torch.nn.Module):
    """HEALPix halo padding as a module holding its index buffers.

    Parameters
    ----------
    nside : int
        Face size ``n`` of the inputs (a power of two).
    pad : int
        Halo width, ``1 <= pad <= nside``.

    Forward
    -------
    x : torch.Tensor, shape [..., 12, nside, nside]
        Returns ``[..., 12, nside + 2*pad, nside + 2*pad]``; same as
        :func:`healpix_pad`.
    """

    def __init__(self, nside: int, pad: int = 1) -> None:
        super().__init__()
        self.nside = _check_nside(nside)
        self.pad = _check_pad(pad, self.nside)
        table = _pad_table(self.nside, self.pad)
        for k in _BUFFERS:
            self.register_buffer(
                k, torch.as_tensor(np.array(getattr(table, k)), dtype=torch.int64), persistent=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _check_faces(x)
        if n != self.nside:
            raise GridError(
                f"HealpixPad was built for nside={self.nside} but got faces of size {n} "
                f"(input shape {tuple(x.shape)}). Build HealpixPad(nside={n}, pad={self.pad})."
            )
        return _pad_impl(x, self.pad, {k: getattr(self, k) for k in _BUFFERS})

    def extra_repr(self) -> str:
        return f"nside={self.nside}, pad={self.pad}"
