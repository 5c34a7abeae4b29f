"""Tests of the canonical name mapping (atmos/io/names.yaml + atmos.io.names)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.errors import DataError
from atmos.io.names import (
    UnitsWarning,
    canonical_variables,
    convert_units,
    detect_style,
    inverse_style,
    load_names,
    normalize_units,
    rename_variables,
    style_names,
    units_equal,
)
from atmos.testing import VARIABLE_INFO


def _field(name_units: dict[str, str | None], level: bool = False) -> xr.Dataset:
    dims = ("time", "level", "latitude", "longitude") if level else ("time", "latitude", "longitude")
    shape = (2, 2, 3, 4) if level else (2, 3, 4)
    coords = {"level": [500, 850]} if level else {}
    out = {}
    for k, (name, units) in enumerate(name_units.items()):
        attrs = {} if units is None else {"units": units}
        out[name] = xr.DataArray(np.full(shape, float(k + 1), np.float32), dims=dims, attrs=attrs)
    return xr.Dataset(out, coords=coords)


def test_every_style_maps_onto_canonical_names():
    names = load_names()
    canon = set(names.canonical)
    assert {"era5", "merra2", "cmip6"} <= set(names.styles)
    for style, table in names.styles.items():
        for src, entry in table.items():
            assert entry.name in canon, (style, src)
            assert entry.without_level is None or entry.without_level in canon
    # the mock's variables all have canonical metadata that agrees with it
    for name, (units, std, *_rest) in VARIABLE_INFO.items():
        assert units_equal(canonical_variables()[name]["units"], units), name
        assert canonical_variables()[name]["standard_name"] == std, name


@pytest.mark.parametrize(
    ("names", "style"),
    [
        (["z", "t", "t2m", "msl"], "era5"),
        (["T", "H", "T2M", "SLP"], "merra2"),
        (["tas", "psl"], "cmip6"),
        (["geopotential", "2m_temperature", "foo"], "canonical"),
        # canonical names do not count; one MERRA-2 name decides
        (["geopotential", "temperature", "T2M"], "merra2"),
    ],
)
def test_detect_style(names, style):
    assert detect_style(names) == style


def test_detect_style_tie_is_an_error():
    with pytest.raises(DataError, match="style="):
        detect_style(["z", "T"])  # one ERA5 name, one MERRA-2 name


def test_unknown_style_is_an_error():
    with pytest.raises(DataError, match="unknown naming style 'grib'.*era5"):
        rename_variables(_field({"t2m": "K"}), "grib")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("m2 s-2", "m**2 s**-2"),
        ("m2 s-2", "m2/s2"),
        ("m s-1", "m/s"),
        ("m2 s-2", "m+2 s-2"),
        ("1", "(0 - 1)"),
        ("kg kg-1", "kg/kg"),
        ("m", "m of water equivalent"),
        ("K", "kelvin"),
    ],
)
def test_units_spellings_are_equal(a, b):
    assert units_equal(a, b)


@pytest.mark.parametrize(("a", "b"), [("m", "m2 s-2"), ("kg kg-1", "1"), ("Pa", "hPa"), ("K", "degC")])
def test_different_units_differ(a, b):
    assert not units_equal(a, b)
    assert normalize_units(a) != normalize_units(b)


def test_z_with_levels_is_geopotential_and_without_is_surface_geopotential():
    on_levels = _field({"z": "m**2 s**-2"}, level=True)
    out, style = rename_variables(on_levels)
    assert style == "era5" and list(out.data_vars) == ["geopotential"]
    surface = _field({"z": "m**2 s**-2", "lsm": "(0 - 1)"})
    out, _ = rename_variables(surface)
    assert set(out.data_vars) == {"geopotential_at_surface", "land_sea_mask"}
    assert out["geopotential_at_surface"].attrs["standard_name"] == "surface_geopotential"
    assert out["geopotential_at_surface"].attrs["units"] == "m2 s-2"  # canonical spelling
    # a single pressure level kept as a scalar coordinate is still geopotential
    z500 = _field({"z": "m**2 s**-2"}).assign_coords(pressure_level=500.0)
    assert list(rename_variables(z500)[0].data_vars) == ["geopotential"]


def test_merra2_geopotential_height_is_scaled_to_geopotential():
    ds = _field({"H": "m", "T": "K"}, level=True)
    out, style = rename_variables(ds)
    assert style == "merra2"
    np.testing.assert_allclose(out["geopotential"].values, 9.80665 * ds["H"].values, rtol=1e-6)
    assert out["geopotential"].attrs["units"] == "m2 s-2"
    assert out["geopotential"].attrs["atmos_original_name"] == "H"
    np.testing.assert_array_equal(out["temperature"].values, ds["T"].values)
    # H already in m2 s-2 (converted upstream) is not scaled twice
    again, _ = rename_variables(_field({"H": "m2 s-2"}, level=True), "merra2")
    np.testing.assert_array_equal(again["geopotential"].values, 1.0)


def test_missing_units_and_standard_name_are_filled_in():
    out, _ = rename_variables(_field({"t2m": None, "u10": "m s**-1"}))
    assert out["2m_temperature"].attrs["units"] == "K"
    assert out["2m_temperature"].attrs["standard_name"] == "air_temperature"
    assert out["10m_u_component_of_wind"].attrs["standard_name"] == "eastward_wind"


def test_known_unit_conversions_are_applied():
    ds = _field({"msl": "hPa", "t2m": "degC", "foo": "hPa"})
    out, _ = rename_variables(ds)
    np.testing.assert_allclose(out["mean_sea_level_pressure"].values, 100.0)  # value 1 hPa
    assert out["mean_sea_level_pressure"].attrs["units"] == "Pa"
    np.testing.assert_allclose(out["2m_temperature"].values, 2.0 + 273.15)
    assert out["foo"].attrs["units"] == "hPa"  # non-canonical variables are left alone


def test_conflicting_units_warn_or_raise():
    ds = _field({"t2m": "m s-1"})
    with pytest.warns(UnitsWarning, match="'2m_temperature' has units 'm s-1'.*'K'"):
        rename_variables(ds)
    with pytest.raises(DataError, match="'2m_temperature' has units 'm s-1'"):
        rename_variables(ds, on_units="raise")
    out, _ = rename_variables(ds, on_units="ignore")
    assert out["2m_temperature"].attrs["units"] == "m s-1"


def test_accepted_alternative_units_pass_silently(recwarn):
    out, _ = rename_variables(_field({"tisr": "J m**-2"}))
    assert out["toa_incident_solar_radiation"].attrs["units"] == "J m**-2"
    assert not [w for w in recwarn if issubclass(w.category, UnitsWarning)]


def test_two_sources_for_one_name_is_an_error():
    with pytest.raises(DataError, match="'t2m' and '2t' both map to .*'2m_temperature'"):
        rename_variables(_field({"t2m": "K", "2t": "K"}))


def test_inverse_style_takes_the_first_listed_source_name():
    inv = inverse_style("era5")
    assert inv["2m_temperature"].source == "t2m"
    assert inv["geopotential"].source == "z" and inv["geopotential_at_surface"].source == "z"
    inv = inverse_style("merra2")
    assert inv["geopotential"].source == "H" and inv["geopotential"].scale == pytest.approx(9.80665)
    assert "canonical" in style_names()


def test_convert_units_returns_none_when_unknown():
    da = xr.DataArray([1.0], dims="x", attrs={"units": "furlong"})
    assert convert_units(da, "m") is None
    same = xr.DataArray([1.0], dims="x", attrs={"units": "m**2 s**-2"})
    assert convert_units(same, "m2 s-2") is same
