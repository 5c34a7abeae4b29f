"""One channel record and one name convention (atmos.channels), used by every layer."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmos.channels import Channel, channel_name, level_label, split_name
from atmos.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1] / "atmos"

VARIABLES = ["geopotential", "temperature", "u_component_of_wind", "specific_humidity", "x"]
SURFACE = ["2m_temperature", "mean_sea_level_pressure", "10m_u_component_of_wind", "land_sea_mask"]
LEVELS = [1, 50, 250, 500, 850, 1000, 7.5, 0.25]


def _cube() -> xr.Dataset:
    lev = np.array([250.0, 500.0, 850.0])
    d = {
        "geopotential": (("level", "latitude"), np.arange(6.0).reshape(3, 2)),
        "2m_temperature": (("latitude",), np.array([280.0, 290.0])),
        # a surface variable whose name ends like a level: must not be split
        "geopotential_thickness_300_700": (("latitude",), np.array([1.0, 2.0])),
    }
    return xr.Dataset(d, coords={"level": lev, "latitude": [-45.0, 45.0]})


@pytest.mark.parametrize(("var", "level"), list(itertools.product(VARIABLES, LEVELS)))
def test_format_then_parse_is_the_identity_on_levels(var, level):
    name = channel_name(var, level)
    assert split_name(name) == (var, level_label(level))
    c = Channel.parse(name)
    assert (c.name, c.variable, c.level) == (name, var, level)
    assert Channel.of(var, float(level)) == c  # 500.0 and 500 name the same channel


@pytest.mark.parametrize("var", SURFACE)
def test_surface_names_are_not_split(var):
    assert split_name(var) == (var, None)
    assert channel_name(var) == var


def test_dataset_decides_what_a_name_means():
    ds = _cube()
    assert split_name("geopotential_500", ds) == ("geopotential", 500)
    # spelled like a level but a variable of the dataset: a surface channel
    assert split_name("geopotential_thickness_300_700", ds) == ("geopotential_thickness_300_700", None)
    # by spelling alone it would have been split
    assert split_name("geopotential_thickness_300_700") == ("geopotential_thickness_300", 700)
    # a levelled spelling of a surface variable is not split
    assert split_name("2m_temperature_500", ds) == ("2m_temperature_500", None)
    # mappings {variable: has_levels} and plain containers work the same way
    assert split_name("geopotential_500", {"geopotential": True}) == ("geopotential", 500)
    assert split_name("geopotential_500", {"geopotential": False}) == ("geopotential_500", None)
    assert split_name("geopotential_500", ["geopotential"]) == ("geopotential", 500)


def test_select_matches_levels_within_rounding_and_drops_the_level():
    ds = _cube()
    ds = ds.assign_coords(level=ds.level + 1e-9)
    da = Channel.parse("geopotential_500", ds).select(ds)
    assert "level" not in da.coords
    np.testing.assert_array_equal(da.values, [2.0, 3.0])
    np.testing.assert_array_equal(Channel.parse("2m_temperature", ds).select(ds).values, [280.0, 290.0])


def test_select_errors_name_the_value_and_the_choices():
    ds = _cube()
    with pytest.raises(DataError, match=r"level 700 not in the levels \[250, 500, 850\]"):
        Channel.parse("geopotential_700", ds).select(ds)
    with pytest.raises(DataError, match=r"'nope' not found.*has \["):
        Channel.parse("nope", ds).select(ds)
    with pytest.raises(DataError, match="has no 'level' dimension"):
        Channel.of("2m_temperature", 500).select(ds)


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigError, match="'abc' is not a number"):
        level_label("abc")
    with pytest.raises(ConfigError, match="not finite"):
        channel_name("t", float("nan"))
    with pytest.raises(ConfigError, match="source 'file' is not one of"):
        Channel("t", "t", source="file")
    with pytest.raises(ConfigError, match=r"unknown channel field\(s\) \['colour'\]"):
        Channel.from_dict({"name": "t", "colour": "red"})


def test_json_round_trip():
    c = Channel.of("temperature", 850, units="K", mean=250.0, std=10.0, residual_mean=0.0, residual_std=1.5)
    assert Channel.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert Channel.from_dict({"name": "geopotential_500"}) == Channel.parse("geopotential_500")


def test_every_layer_uses_the_one_record():
    """The window dataset, the Forecaster, io and the metrics all hand out atmos.channels.Channel."""
    import atmos.io
    from atmos.io.windows import WindowSchema
    from atmos.rollout.tables import channels_from_meta

    assert atmos.io.Channel is Channel
    schema = WindowSchema(groups={"inputs": [Channel.of("temperature", 850, mean=1.0, std=2.0)]})
    back = WindowSchema.from_json(schema.to_json())
    assert back.groups["inputs"][0] == schema.groups["inputs"][0]
    assert isinstance(back.groups["inputs"][0], Channel)
    meta = {"data_schema": {"groups": {"inputs": [Channel.of("temperature", 850, mean=1.0, std=2.0).to_dict()]}}}
    assert isinstance(channels_from_meta(meta)["inputs"][0], Channel)
    with pytest.warns(DeprecationWarning, match="atmos.channels.Channel"):
        from atmos.rollout import ChannelInfo
    assert ChannelInfo is Channel


# the ways modules used to take a channel name apart by hand
_HAND_PARSING = [
    re.compile(r"""\.r?partition\(\s*["']_["']\s*\)"""),
    re.compile(r"""\.rsplit\(\s*["']_["']"""),
    re.compile(r"""\(\\d\+(\(\?:\\\.\\d\+\)\?)?\)\$"""),  # a regex ending in _(\d+)$
    re.compile(r"""\[_@\]\(\\d\+\)"""),
]


def test_channel_names_are_parsed_in_one_place():
    """No module but atmos/channels.py splits ``variable_level`` names itself."""
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        if f.name == "channels.py" and f.parent == ROOT:
            continue
        text = f.read_text()
        for i, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in _HAND_PARSING):
                bad.append(f"{f.relative_to(ROOT.parent)}:{i}: {line.strip()}")
    assert not bad, "channel names parsed by hand (use atmos.channels.split_name):\n" + "\n".join(bad)
