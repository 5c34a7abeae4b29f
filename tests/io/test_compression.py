"""Invariants of atmos.io.compression: lossless round trips are exact, bit rounding stays within the
bound of its kept mantissa bits in every chunk, information is monotone in bits, attrs are recorded,
and bad information fractions are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from atmos.errors import ConfigError
from atmos.io import compression as C


def _cube(seed: int = 0) -> xr.Dataset:
    from atmos.testing import mock_era5

    ds = mock_era5("2020-01-01", periods=12, nlat=16, nlon=32, levels=(500, 850),
                   variables=["geopotential", "temperature", "2m_temperature", "u_component_of_wind"],
                   seed=seed).load()
    return ds


def _wide(seed: int = 0) -> np.ndarray:
    """Values over many binades, both signs, zeros, a NaN: the hard cases of bit rounding."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((6, 16, 32)) * 10.0 ** rng.integers(-3, 5, (6, 16, 32))).astype(np.float32)
    a[0, 0, :4] = 0.0
    a[1, 2, 3] = np.nan
    return a


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_lossless_round_trip_is_exact(tmp_path, suffix):
    ds = _cube()
    rec = C.write_compressed(ds, tmp_path / f"c{suffix}")
    back = (xr.open_zarr if suffix == ".zarr" else xr.open_dataset)(tmp_path / f"c{suffix}").load()
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert rec["variables"][name]["max_abs_error"] == 0.0
    assert rec["information"] is None and rec["ratio"] > 1.0
    assert json.loads(back.attrs["atmos_compression"])["ratio"] == pytest.approx(rec["ratio"])


def test_zarr_default_codec_is_blosc_zstd(tmp_path):
    C.write_compressed(_cube(), tmp_path / "c.zarr")
    enc = xr.open_zarr(tmp_path / "c.zarr")["temperature"].encoding
    codec = enc["compressors"][0]
    assert type(codec).__name__ == "BloscCodec" and str(codec.cname.value) == "zstd"


@pytest.mark.parametrize("keepbits", [0, 1, 3, 7, 12, 22, 23])
def test_bitround_matches_numcodecs_and_bound_holds_per_chunk(keepbits):
    from numcodecs import BitRound

    a = _wide(keepbits)
    r = C.bitround(a, keepbits)
    ref = BitRound(keepbits).decode(BitRound(keepbits).encode(a.copy())).reshape(a.shape)
    ok = np.isfinite(a)
    np.testing.assert_array_equal(r[ok], ref[ok])  # numcodecs turns NaN into inf at 0 bits; NaN stays NaN here
    assert np.isnan(r[1, 2, 3]) and np.isnan(a[1, 2, 3])  # the input is untouched, NaN stays NaN
    err = np.abs(r.astype(np.float64) - a)
    bound = C.error_bound(a, keepbits)
    assert np.all(err[ok] <= bound[ok])
    for i in range(a.shape[0]):  # every chunk: max error <= max |x| * 2**-(keepbits+1)
        c = ok[i]
        assert err[i][c].max() <= np.abs(a[i][c].astype(np.float64)).max() * 2.0 ** -(keepbits + 1)
    if keepbits == 23:
        np.testing.assert_array_equal(r, a)


def test_bitround_float64():
    a = _wide().astype(np.float64)
    r = C.bitround(a, 10)
    ok = np.isfinite(a)
    assert np.all(np.abs(r - a)[ok] <= C.error_bound(a, 10)[ok])


def test_lossy_store_within_bound_for_every_chunk(tmp_path):
    ds = _cube()
    rec = C.write_compressed(ds, tmp_path / "c.zarr", information=0.99)
    back = xr.open_zarr(tmp_path / "c.zarr")
    for name in ds.data_vars:
        k = rec["variables"][name]["keepbits"]
        assert 0 <= k <= 23 and back[name].attrs["atmos_keepbits"] == k
        assert "atmos_psnr_db" in back[name].attrs and "atmos_max_abs_error" in back[name].attrs
        if "time" not in ds[name].dims:  # a static field: one chunk
            o, d = ds[name].values, back[name].values
            assert np.all(np.abs(d.astype(np.float64) - o) <= C.error_bound(o, k))
            continue
        step = back[name].encoding["chunks"][0]
        for t0 in range(0, ds.sizes["time"], step):  # chunk by chunk along time
            o = ds[name].isel(time=slice(t0, t0 + step)).values
            d = back[name].isel(time=slice(t0, t0 + step)).values
            assert np.all(np.abs(d.astype(np.float64) - o) <= C.error_bound(o, k))
    assert rec["information"] == 0.99
    assert rec["ratio"] > C.write_compressed(ds, tmp_path / "l.zarr")["ratio"]


def test_information_is_monotone_in_bits():
    ds = _cube()
    a = ds["temperature"].values
    info = C.bitinformation(a, ds["temperature"].dims.index("longitude"))
    assert info.shape == (32,) and np.all(info >= 0) and info.sum() > 0
    kept = [C.information_kept(info, k) for k in range(24)]
    assert np.all(np.diff(kept) >= 0) and kept[-1] == pytest.approx(1.0)
    fracs = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
    bits = [C.keepbits_for(info, f) for f in fracs]
    assert bits == sorted(bits) and bits[-1] == 23
    for f, k in zip(fracs, bits):
        assert C.information_kept(info, k) >= f - 1e-9
        if 0 < k and f < 1:
            assert C.information_kept(info, k - 1) < f  # the fewest bits


def test_bitinformation_of_noise_and_of_copies():
    rng = np.random.default_rng(3)
    noise = rng.random((64, 512)).astype(np.float32) + 1.0  # independent values in [1, 2)
    assert C.bitinformation(noise, -1)[9:].sum() == 0.0  # no real information in the mantissa
    twins = np.repeat(noise, 2, axis=-1)  # every value has an identical neighbour half the time
    assert C.bitinformation(twins, -1)[9:20].min() > 0.1


def test_stream_rounder_fixes_bits_and_resumes():
    a = _cube()["temperature"].values.astype(np.float32)
    r = C.StreamRounder(0.99)
    nan = np.full(a[0].shape, np.nan, np.float32)
    assert np.isnan(r("t", nan, C.spatial_axes(["level", "latitude", "longitude"]))).all()  # no bits from NaN
    out0 = r("t", a[0], [-1, -2])
    k = r.keepbits["t"]
    np.testing.assert_array_equal(out0, C.bitround(a[0], k))
    again = C.StreamRounder.from_attr(r.attr())
    assert again.keepbits == {"t": k} and again.information == 0.99
    np.testing.assert_array_equal(again("t", a[5], [-1]), C.bitround(a[5], k))
    assert C.StreamRounder.from_attr(None).information is None


@pytest.mark.parametrize("bad", [0, -0.5, 1.0001, 2, float("nan"), "lots"])
def test_bad_information_is_refused(bad):
    with pytest.raises(ConfigError, match=r"not a fraction of information in \(0, 1\].*0\.99"):
        C.check_information(bad)


def test_good_information_values():
    assert C.check_information(None) is None
    assert C.check_information("0.99") == 0.99 and C.check_information(1) == 1.0


def test_bad_codec_options(tmp_path):
    with pytest.raises(ConfigError, match="not one of blosc, pcodec, zfp"):
        C.zarr_encoding(_cube(), "lz5")
    with pytest.raises(ConfigError, match="for zarr stores"):
        C.write_compressed(_cube(), tmp_path / "x.nc", codec="pcodec")


def test_zfp_within_tolerance_and_pcodec_exact(tmp_path):
    pytest.importorskip("zfpy")
    pytest.importorskip("pcodec")
    ds = _cube()[["temperature", "2m_temperature"]]
    rec = C.write_compressed(ds, tmp_path / "z.zarr", codec="zfp", tolerance=0.05)
    back = xr.open_zarr(tmp_path / "z.zarr").load()
    for name in ds.data_vars:
        assert np.abs(back[name].values - ds[name].values).max() <= 0.05
        assert rec["variables"][name]["max_abs_error"] <= 0.05
    C.write_compressed(ds, tmp_path / "p.zarr", codec="pcodec")
    back = xr.open_zarr(tmp_path / "p.zarr").load()
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)


def test_compress_refuses_existing_output(tmp_path):
    C.write_compressed(_cube(), tmp_path / "a.zarr")
    C.compress(tmp_path / "a.zarr", tmp_path / "b.zarr", information=0.999)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        C.compress(tmp_path / "a.zarr", tmp_path / "b.zarr")
    with pytest.raises(ConfigError, match="is the input"):
        C.compress(tmp_path / "a.zarr", tmp_path / "a.zarr", overwrite=True)
