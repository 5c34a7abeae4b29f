"""Tests of the dataset catalog (atmos.catalog + catalogs/*.yaml)."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr

from atmos import catalog
from atmos.errors import CatalogError, SourceError
from atmos.io.open import open_dataset
from atmos.testing import mock_era5
from atmos.testing._styles import to_merra2

WB2 = "gs://weatherbench2/datasets/era5/"
EXPECTED_URLS = {
    "era5-wb2-64x32": WB2 + "1959-2023_01_10-6h-64x32_equiangular_conservative.zarr",
    "era5-wb2-240x121": WB2 + "1959-2023_01_10-6h-240x121_equiangular_with_poles_conservative.zarr",
    "era5-wb2-1440x721": WB2 + "1959-2023_01_10-wb13-6h-1440x721_with_derived_variables.zarr",
    "arco-era5": "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3",
    "speedy-world": "${ATMOS_DATA}/speedy-world-2018.zarr",
    "speedy-world-val": "${ATMOS_DATA}/speedy-world-2019-12.zarr",
}


@pytest.fixture(autouse=True)
def fresh_catalog():
    catalog.refresh()
    yield
    catalog.refresh()


def _write_catalog(folder, text: str, name: str = "extra.yaml"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_packaged_entries_and_locations():
    names = catalog.entry_names()
    for name, url in EXPECTED_URLS.items():
        assert name in names
        assert catalog.get_entry(name).url == url
    merra = catalog.get_entry("merra2")
    assert merra.placeholders() == ["MERRA2_DIR"] and "*" in merra.url
    for name in names:
        e = catalog.get_entry(name)
        assert e.description and e.license and e.citation, name
        assert e.grid.get("type") == "latlon" and e.time_step and e.period, name


def test_list_entries_rows_are_table_ready():
    rows = catalog.list_entries()
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    keys = {"name", "grid", "time_step", "period", "variables", "levels", "location", "description"}
    for row in rows:
        assert set(row) == keys
        assert all(isinstance(v, str) for v in row.values())
    speedy = next(r for r in rows if r["name"] == "speedy-world-val")
    assert speedy["grid"] == "latlon 64x32 equiangular"
    assert speedy["variables"] == "16" and speedy["levels"] == "5"


def test_speedy_entries_say_simulated_and_describe():
    for name in ("speedy-world", "speedy-world-val"):
        entry = catalog.get_entry(name)
        assert "simulated" in entry.description.lower() and "not observations" in entry.description.lower()
        text = entry.describe()
        for part in (name, entry.url, "64x32", "250, 500, 700, 850, 1000", "Molteni", "variables (16)"):
            assert part in text, part


def test_grid_object_matches_the_data_grid():
    grid = catalog.get_entry("speedy-world-val").grid_object()
    mock = mock_era5(periods=1)  # the WB2 64x32 layout
    np.testing.assert_allclose(grid.lat, mock["latitude"].values)
    np.testing.assert_allclose(grid.lon, mock["longitude"].values)
    big = catalog.get_entry("era5-wb2-240x121").grid_object()
    assert big.shape == (121, 240) and big.lat[0] == -90.0


def test_unknown_entry_lists_the_names():
    with pytest.raises(CatalogError, match=r"no catalog entry named 'era6'.*'arco-era5'.*ATMOS_CATALOG_PATH"):
        catalog.get_entry("era6")


def test_placeholder_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("ATMOS_DATA", str(tmp_path))
    assert catalog.resolve("speedy-world-val") == f"{tmp_path}/speedy-world-2019-12.zarr"
    monkeypatch.delenv("ATMOS_DATA")
    with pytest.raises(SourceError, match=r"'speedy-world-val'.*ATMOS_DATA is not set.*export ATMOS_DATA="):
        catalog.resolve("speedy-world-val")
    with pytest.raises(SourceError, match="MERRA2_DIR is not set"):
        open_dataset("merra2")
    # describe() still works without the variable and says what is missing
    assert "unresolved" in catalog.get_entry("speedy-world-val").describe()


def test_extra_catalog_dirs_add_and_override(monkeypatch, tmp_path):
    extra = _write_catalog(
        tmp_path / "cat",
        """
        datasets:
          - name: my-cube
            description: A private cube.
            url: ${MY_DIR:-/nowhere}/cube.zarr
          - name: speedy-world
            description: Overridden.
            url: /elsewhere/speedy.zarr
        """,
    )
    monkeypatch.setenv("ATMOS_CATALOG_PATH", str(extra))
    assert "my-cube" in catalog.entry_names()
    assert catalog.resolve("my-cube") == "/nowhere/cube.zarr"  # ${VAR:-default}
    monkeypatch.setenv("MY_DIR", "/data")
    assert catalog.resolve("my-cube") == "/data/cube.zarr"
    assert catalog.get_entry("speedy-world").url == "/elsewhere/speedy.zarr"
    assert catalog.get_entry("speedy-world-val").url == EXPECTED_URLS["speedy-world-val"]
    monkeypatch.delenv("ATMOS_CATALOG_PATH")
    assert "my-cube" not in catalog.entry_names()


def test_entry_opens_through_open_dataset(monkeypatch, tmp_path):
    wb2 = mock_era5(periods=4, levels=(500, 850))
    raw = to_merra2(wb2)
    for v in raw.variables.values():
        v.encoding = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw.to_zarr(tmp_path / "data" / "m2.zarr", mode="w", consolidated=False)
    extra = _write_catalog(
        tmp_path / "cat",
        """
        datasets:
          - name: tiny-merra
            description: A MERRA-2 shaped test cube.
            url: ${TINY_DIR}/m2.zarr
            open: {style: merra2}
        """,
    )
    monkeypatch.setenv("ATMOS_CATALOG_PATH", str(extra))
    monkeypatch.setenv("TINY_DIR", str(tmp_path / "data"))
    ds = catalog.get_entry("tiny-merra").open_dataset(variables=["geopotential"])
    assert ds.attrs["atmos_style"] == "merra2"
    assert ds.attrs["atmos_source"] == f"tiny-merra ({tmp_path / 'data'}/m2.zarr)"
    ref = mock_era5(periods=4, levels=(500, 850), canonical=True)[["geopotential"]]
    xr.testing.assert_allclose(ds, ref)
    # an explicit style= wins over the entry's own open kwargs
    same = open_dataset("tiny-merra", style="merra2", variables="geopotential")
    xr.testing.assert_allclose(same, ref)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("datasets: [{name: x, description: y}]", r"lacks \['url \(or path\)'\]"),
        ("entries: []", "no 'datasets:' list"),
        ("datasets: [{name: x, description: y, url: z, period: [2020]}]", "expected \\[start, end\\]"),
        ("datasets: [ {name: x", "cannot read catalog file"),
        (
            "datasets: [{name: x, description: y, url: z}, {name: x, description: y, url: z}]",
            "more than once",
        ),
    ],
)
def test_bad_catalog_files(monkeypatch, tmp_path, text, match):
    monkeypatch.setenv("ATMOS_CATALOG_PATH", str(_write_catalog(tmp_path / "bad", text)))
    with pytest.raises(CatalogError, match=match):
        catalog.entry_names()


def test_missing_catalog_dir_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ATMOS_CATALOG_PATH", str(tmp_path / "absent"))
    with pytest.raises(CatalogError, match="does not exist"):
        catalog.list_entries()


@pytest.mark.requires_speedy
def test_speedy_catalog_metadata_matches_the_data(speedy_path):
    for name in ("speedy-world", "speedy-world-val"):
        entry = catalog.get_entry(name)
        ds = xr.open_zarr(entry.resolve())
        assert sorted(entry.variables) == sorted(map(str, ds.data_vars))
        assert list(entry.levels) == ds["level"].values.tolist()
        assert str(ds["time"].values[0])[:13] == entry.period[0]
        assert str(ds["time"].values[-1])[:13] == entry.period[1]
    assert speedy_path.is_dir()
