"""Tests of atmos.grids.padding (HEALPix halo padding).

healpy (GPL) is the independent oracle for pixel neighbourhoods: its
``get_all_neighbours(nside, ipix, nest=True)`` returns, per pixel, the nested ids of
the neighbours in the order SW, W, NW, N, NE, E, SE, S (-1 where there is none).
In base-cell coordinates these directions are the steps (dx, dy) below; in the
face layout (x = n-1-r, y = n-1-c) a step (dx, dy) moves (r, c) by (-dx, -dy).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from atmos.errors import GridError
from atmos.grids.healpix import face_nest_index
from atmos.grids.padding import HealpixPad, _pad_table, healpix_pad, healpix_pad_indices, healpix_unpad

hp = pytest.importorskip("healpy")

HEALPY_DIRS = {(-1, 0): 0, (-1, 1): 1, (0, 1): 2, (1, 1): 3, (1, 0): 4, (1, -1): 5, (0, -1): 6, (-1, -1): 7}
EDGE_COLUMNS = [0, 2, 4, 6]  # SW, NW, NE, SE: the edge-sharing neighbours
CASES = [(n, p) for n in (2, 4, 8, 16) for p in (1, 2, 3) if p <= n]


def _neighbours(nside: int) -> np.ndarray:
    """healpy neighbours of every nested pixel, [npix, 8] (SW, W, NW, N, NE, E, SE, S)."""
    return hp.get_all_neighbours(nside, np.arange(12 * nside**2), nest=True).T


def _padded_ids(nside: int, pad: int) -> np.ndarray:
    """healpix_pad applied to the nested ids themselves, [12, m, m] (float64 is exact)."""
    ids = torch.as_tensor(face_nest_index(nside), dtype=torch.float64)
    return healpix_pad(ids, pad).numpy()


def _three_face_corners(nside: int, pad: int) -> list[dict]:
    """Face corners at the vertices where only three base cells meet, found with healpy.

    For each: face, padded position (rc, cc) of the corner pixel, outward step
    (dr, dc) in the padded array, and the ids of the three corner pixels at the vertex.
    """
    nb = _neighbours(nside)
    nest = face_nest_index(nside)
    out = []
    for f in range(12):
        for r, c in itertools.product((0, nside - 1), repeat=2):
            sx = 1 if r == 0 else -1  # outward step in x at this corner (x = n-1-r)
            sy = 1 if c == 0 else -1
            pix = nest[f, r, c]
            if nb[pix, HEALPY_DIRS[(sx, sy)]] != -1:
                continue
            trio = frozenset(
                [int(pix), int(nb[pix, HEALPY_DIRS[(sx, 0)]]), int(nb[pix, HEALPY_DIRS[(0, sy)]])]
            )
            out.append({"face": f, "rc": r + pad, "cc": c + pad, "dr": -sx, "dc": -sy, "trio": trio})
    return out


def _three_face_mask(nside: int, pad: int) -> np.ndarray:
    m = nside + 2 * pad
    mask = np.zeros((12, m, m), dtype=bool)
    for k in _three_face_corners(nside, pad):
        for a, b in itertools.product(range(1, pad + 1), repeat=2):
            mask[k["face"], k["rc"] + k["dr"] * a, k["cc"] + k["dc"] * b] = True
    return mask


# -- geometry vs healpy -------------------------------------------------------------------
@pytest.mark.parametrize("nside,pad", CASES)
def test_first_ring_is_the_healpy_neighbourhood(nside: int, pad: int) -> None:
    """The 8 cells around every face element are its healpy neighbours in their directions."""
    out = _padded_ids(nside, pad)
    nb = _neighbours(nside)[face_nest_index(nside)]  # [12, n, n, 8]
    missing = 0
    for (dx, dy), k in HEALPY_DIRS.items():
        r0, c0 = pad - dx, pad - dy
        shifted = out[:, r0 : r0 + nside, c0 : c0 + nside]
        expected = nb[..., k]
        has = expected >= 0
        np.testing.assert_array_equal(shifted[has], expected[has])
        missing += int((~has).sum())
    assert missing == 24  # the 8 three-face vertices, seen from each of their 3 faces


@pytest.mark.parametrize("nside,pad", [(n, p) for n, p in CASES if p > 1])
def test_outer_rings_continue_straight_lines(nside: int, pad: int) -> None:
    """Every 3 consecutive cells along a row or column of the padded face (outside the
    three-face corner blocks, at least one of them in the halo) are a straight line of
    the HEALPix grid: the last is the edge neighbour of the middle one that is neither
    the first one nor touches it. Together with the first-ring test this pins down every
    halo cell outside the three-face corner blocks."""
    out = _padded_ids(nside, pad).astype(np.int64)
    m = nside + 2 * pad
    nb = _neighbours(nside)
    skip = _three_face_mask(nside, pad)
    halo = np.ones((m, m), dtype=bool)
    halo[pad : pad + nside, pad : pad + nside] = False
    checked = 0
    for axis in (1, 2):
        for step in (1, -1):
            w, q, v = (np.roll(out, s * step, axis=axis) for s in (2, 1, 0))
            ws, qs, vs = (np.roll(skip, s * step, axis=axis) for s in (2, 1, 0))
            wh, qh, vh = (np.roll(np.broadcast_to(halo, out.shape), s * step, axis=axis) for s in (2, 1, 0))
            valid = np.ones(out.shape, dtype=bool)  # drop the wrapped-around positions of np.roll
            idx = [slice(None)] * 3
            idx[axis] = slice(0, 2) if step == 1 else slice(m - 2, m)
            valid[tuple(idx)] = False
            sel = valid & ~(ws | qs | vs) & (wh | qh | vh)
            v, q, w = v[sel], q[sel], w[sel]
            is_edge_nb = (nb[q][:, EDGE_COLUMNS] == v[:, None]).any(axis=1)
            touches_w = (nb[w] == v[:, None]).any(axis=1) | (v == w)
            assert is_edge_nb.all(), f"{(~is_edge_nb).sum()} cells are not edge neighbours"
            assert not touches_w.any(), f"{touches_w.sum()} cells bend the line"
            checked += sel.sum()
    assert checked > 12 * 4 * nside * pad


@pytest.mark.parametrize("nside,pad", CASES)
def test_corner_rule_at_three_face_vertices(nside: int, pad: int) -> None:
    corners = _three_face_corners(nside, pad)
    assert len(corners) == 24
    trios = [k["trio"] for k in corners]
    assert len(set(trios)) == 8 and all(trios.count(t) == 3 for t in trios)  # 8 vertices x 3 faces
    assert {k["face"] for k in corners} == set(range(12))

    x = torch.randn(2, 12, nside, nside, dtype=torch.float64)
    out = healpix_pad(x, pad)
    for k in corners:
        o = out[:, k["face"]]

        def H(a: int, b: int, k=k, o=o) -> torch.Tensor:
            return o[:, k["rc"] + k["dr"] * a, k["cc"] + k["dc"] * b]

        for a, b in itertools.product(range(1, pad + 1), repeat=2):
            if a > b:
                expected = H(a, b - a + 1)
            elif a < b:
                expected = H(a - b + 1, b)
            else:
                expected = 0.5 * H(a, 0) + 0.5 * H(0, a)
            torch.testing.assert_close(H(a, b), expected, rtol=0, atol=1e-15)
        # pad=1 statement of the rule: the missing cell is the mean of its two adjacent halo cells
        assert torch.allclose(H(1, 1), 0.5 * (H(1, 0) + H(0, 1)), rtol=0, atol=1e-15)
        assert not torch.allclose(H(1, 1), H(1, 0))


def test_four_face_corner_blocks_hold_real_pixels() -> None:
    """Outside the three-face blocks the padded ids are exactly integer ids (no averaging)."""
    out = _padded_ids(8, 3)
    skip = _three_face_mask(8, 3)
    vals = out[~skip]
    np.testing.assert_array_equal(vals, np.round(vals))
    assert ((vals >= 0) & (vals < 12 * 64)).all()
    assert (out[skip] != np.round(out[skip])).any()  # the averaged diagonal cells


# -- autograd -----------------------------------------------------------------------------
@pytest.mark.parametrize("nside,pad", [(2, 1), (2, 2), (4, 3)])
def test_gradcheck(nside: int, pad: int) -> None:
    x = torch.randn(1, 12, nside, nside, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: healpix_pad(t, pad), (x,))


def test_gradgradcheck() -> None:
    x = torch.randn(2, 12, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: healpix_pad(t, 2), (x,))


def test_backward_is_the_adjoint() -> None:
    """<pad(x), y> == <x, pad^T(y)> with pad^T from autograd, for random x, y."""
    x = torch.randn(3, 12, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 12, 14, 14, dtype=torch.float64)
    (grad,) = torch.autograd.grad((healpix_pad(x, 3) * y).sum(), x)
    lhs = (healpix_pad(x.detach(), 3) * y).sum()
    torch.testing.assert_close(lhs, (x.detach() * grad).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nside,pad", [(4, 1), (8, 3)])
def test_gradient_counts_uses(nside: int, pad: int) -> None:
    """d sum(out) / dx = how often each pixel appears in the output (0.5 per averaged use)."""
    x = torch.randn(12, nside, nside, dtype=torch.float64, requires_grad=True)
    healpix_pad(x, pad).sum().backward()
    m = nside + 2 * pad
    npix = 12 * nside**2
    out = _padded_ids(nside, pad)
    skip = _three_face_mask(nside, pad)
    counts = np.bincount(out[~skip].astype(np.int64), minlength=npix).astype(float)
    for k in _three_face_corners(nside, pad):  # corner rule, spelled out from positions
        o = out[k["face"]]
        for a, b in itertools.product(range(1, pad + 1), repeat=2):
            if a == b:
                srcs, w = [(a, 0), (0, a)], 0.5
            else:
                srcs, w = [(a, b - a + 1) if a > b else (a - b + 1, b)], 1.0
            for sa, sb in srcs:
                counts[int(o[k["rc"] + k["dr"] * sa, k["cc"] + k["dc"] * sb])] += w
    grad = x.grad.reshape(-1).numpy()
    expected = counts[face_nest_index(nside).ravel()]
    np.testing.assert_array_equal(grad, expected)
    assert grad.sum() == 12 * m * m
    assert (grad >= 1).all()


# -- dtypes, layouts, module --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_preserved(dtype: torch.dtype) -> None:
    x = torch.randn(2, 12, 4, 4, dtype=dtype)
    out = healpix_pad(x, 2)
    assert out.dtype == dtype and out.shape == (2, 12, 8, 8)
    ref = healpix_pad(x.double(), 2)
    exact = torch.as_tensor(~_three_face_mask(4, 2))
    assert torch.equal(out.double()[:, exact], ref[:, exact])  # copies are exact
    torch.testing.assert_close(out.double(), ref.to(dtype).double(), rtol=0, atol=2e-2)


def test_leading_dims() -> None:
    n, p = 4, 2
    x = torch.randn(2, 3, 12, n, n)
    out = healpix_pad(x, p)
    assert out.shape == (2, 3, 12, n + 2 * p, n + 2 * p)
    for b, c in itertools.product(range(2), range(3)):
        single = healpix_pad(x[b, c], p)  # [12, n, n]
        assert single.shape == (12, n + 2 * p, n + 2 * p)
        assert torch.equal(out[b, c], single)
    # non-contiguous input and a leading dim of size 0
    xt = x.permute(1, 0, 2, 3, 4)
    assert torch.equal(healpix_pad(xt, p), out.permute(1, 0, 2, 3, 4))
    assert healpix_pad(torch.zeros(0, 12, n, n), p).shape == (0, 12, n + 2 * p, n + 2 * p)


@pytest.mark.parametrize("nside,pad", [(1, 1), (4, 1), (8, 3), (16, 16)])
def test_pad_then_unpad_is_identity(nside: int, pad: int) -> None:
    x = torch.randn(3, 12, nside, nside)
    out = healpix_pad(x, pad)
    assert torch.equal(healpix_unpad(out, pad), x)


def test_nside_one() -> None:
    """At nside=1 each face is one pixel; its 8 halo cells are the base-cell neighbours."""
    out = _padded_ids(1, 1)
    nb = _neighbours(1)
    for f in range(12):
        for (dx, dy), k in HEALPY_DIRS.items():
            if nb[f, k] >= 0:
                assert out[f, 1 - dx, 1 - dy] == nb[f, k]


def test_module_matches_function_and_has_no_state() -> None:
    mod = HealpixPad(8, 2)
    assert mod.state_dict() == {}
    assert "nside=8, pad=2" in repr(mod)
    x = torch.randn(2, 5, 12, 8, 8, dtype=torch.float64)
    assert torch.equal(mod(x), healpix_pad(x, 2))
    assert all(b.dtype == torch.int64 for b in mod.buffers())
    mod = mod.to(torch.float16)  # buffers are integer indices: unaffected
    assert torch.equal(mod(x.half()), healpix_pad(x.half(), 2))


def test_index_table_is_cached() -> None:
    assert _pad_table(8, 2) is _pad_table(8, 2)


def test_public_indices_reproduce_the_padding() -> None:
    idx = {k: torch.from_numpy(v) for k, v in healpix_pad_indices(4, 3).items()}
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    flat = x.reshape(2, -1)
    out = flat[:, idx["src"].ravel()]
    out[:, idx["avg_dst"]] = 0.5 * (flat[:, idx["avg_src_a"]] + flat[:, idx["avg_src_b"]])
    assert len(idx["avg_dst"]) == 24 * 3
    assert torch.equal(out.reshape(2, 12, 10, 10), healpix_pad(x, 3))
    idx["src"].zero_()  # copies: the cached table is untouched
    assert torch.equal(healpix_pad(x, 3), out.reshape(2, 12, 10, 10))
    assert healpix_pad_indices(4, 3)["src"].max() > 0


def test_table_covers_every_pixel() -> None:
    t = _pad_table(4, 2)
    m = 8
    assert t.src.shape == (12, m, m)
    np.testing.assert_array_equal(np.sort(t.src[:, 2:6, 2:6].ravel()), np.arange(12 * 16))
    assert len(t.halo_dst) == 12 * (m * m - 16) and len(set(t.halo_dst.tolist())) == len(t.halo_dst)


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, match",
    [
        ((11, 4, 4), r"\[\.\.\., 12, n, n\].*\(11, 4, 4\)"),
        ((12, 4, 8), r"\(12, 4, 8\)"),
        ((4, 4), r"\(4, 4\)"),
        ((12, 3, 3), r"power of two.*3"),
        ((12, 6, 6), r"power of two.*6"),
    ],
)
def test_bad_shapes_raise(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(GridError, match=match):
        healpix_pad(torch.zeros(shape), 1)


@pytest.mark.parametrize("pad", [0, -1, 5, 1.0, True, "1", None])
def test_bad_pad_raises(pad) -> None:
    with pytest.raises(GridError, match=r"between 1 and nside=4.*" + repr(pad).replace("(", r"\(")):
        healpix_pad(torch.zeros(12, 4, 4), pad)
    with pytest.raises(GridError):
        HealpixPad(4, pad)


def test_other_errors() -> None:
    with pytest.raises(GridError, match="floating-point.*int64"):
        healpix_pad(torch.zeros(12, 4, 4, dtype=torch.int64), 1)
    with pytest.raises(GridError, match="torch.Tensor.*ndarray"):
        healpix_pad(np.zeros((12, 4, 4)), 1)
    with pytest.raises(GridError, match="built for nside=8.*size 4"):
        HealpixPad(8, 1)(torch.zeros(12, 4, 4))
    with pytest.raises(GridError, match="power of two"):
        HealpixPad(6, 1)
    with pytest.raises(GridError):
        healpix_unpad(torch.zeros(12, 6, 6), 3)  # nothing left
    with pytest.raises(GridError, match="power of two"):
        healpix_unpad(torch.zeros(12, 7, 7), 1)  # 5 is not an nside
    with pytest.raises(GridError):
        healpix_unpad(torch.zeros(11, 6, 6), 1)
