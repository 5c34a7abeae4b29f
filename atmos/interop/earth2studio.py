"""atmos checkpoints as earth2studio prognostic models, earth2studio data sources as atmos data.

>>> from atmos.interop.earth2studio import AtmosPrognostic, dataset_from_source   # doctest: +SKIP
>>> model = AtmosPrognostic()            # the embedded sample model (SPEEDY-world)  # doctest: +SKIP
>>> import earth2studio.run                                                       # doctest: +SKIP
>>> io = earth2studio.run.deterministic(["2020-01-01"], 4, model, source, io)    # doctest: +SKIP

* :class:`AtmosPrognostic` follows earth2studio's ``PrognosticModel`` protocol
  (``input_coords``, ``output_coords``, ``__call__``, ``create_iterator``, ``to``) around an
  :class:`atmos.rollout.Forecaster`: the same ``encode / advance / decode`` calls as
  ``atmos rollout``, so the trajectory is the one :func:`atmos.rollout.rollout` gives on the
  same initial conditions. Forcings (TOA insolation, time encodings) are computed from the
  valid time inside the adapter: earth2studio is asked for the prognostic variables only.
  Statics come from the ``statics`` dataset (the embedded sample's by default for the sample).
* :func:`dataset_from_source` calls an earth2studio ``DataSource``
  (``source(time, variable) -> DataArray[time, variable, lat, lon]``) and returns a canonical
  atmos dataset (WeatherBench2 names, ``level``, ascending latitude) for
  :func:`atmos.rollout.rollout` or ``atmos rollout --data`` (after ``ds.to_zarr``).
* :func:`to_earth2studio` is the reverse: a canonical dataset as an earth2studio data array
  (e.g. for ``earth2studio.data.DataArrayFile``).

Names: atmos channels (``geopotential_500``, ``2m_temperature``...) map to earth2studio ids
(``z500``, ``t2m``...) by :data:`E2S_NAMES` / :func:`e2s_name`; the units are the same on both
sides (``z`` is geopotential in m2 s-2, ``msl`` in Pa, ``r`` in %). Channels without an
earth2studio id keep their atmos name (or pass ``names={"evaporation": "e"}``).

earth2studio is imported only when needed; install it with ``pip install "atmos[earth2studio]"``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.channels import Channel, channel_name, split_name
from atmos.errors import ConfigError, DataError

__all__ = [
    "E2S_LEVELLED",
    "E2S_NAMES",
    "AtmosPrognostic",
    "atmos_channel",
    "dataset_from_source",
    "e2s_name",
    "to_earth2studio",
]

INSTALL_HINT = 'pip install "atmos[earth2studio]"'

#: Canonical atmos variables on pressure levels -> earth2studio prefix (``z`` + ``500`` = ``z500``).
E2S_LEVELLED: dict[str, str] = {
    "geopotential": "z",
    "temperature": "t",
    "u_component_of_wind": "u",
    "v_component_of_wind": "v",
    "vertical_velocity": "w",
    "specific_humidity": "q",
    "relative_humidity": "r",
}

#: Canonical atmos single-level and static variables -> earth2studio id (same units).
#: ``toa_incident_solar_radiation`` is absent on purpose: atmos keeps it in W m-2, earth2studio's
#: ``tisr`` is J m-2, and the adapter computes it from astronomy anyway.
E2S_NAMES: dict[str, str] = {
    "2m_temperature": "t2m",
    "2m_dewpoint_temperature": "d2m",
    "2m_specific_humidity": "q2m",
    "10m_u_component_of_wind": "u10m",
    "10m_v_component_of_wind": "v10m",
    "100m_u_component_of_wind": "u100m",
    "100m_v_component_of_wind": "v100m",
    "mean_sea_level_pressure": "msl",
    "surface_pressure": "sp",
    "total_column_water_vapour": "tcwv",
    "total_cloud_cover": "tcc",
    "total_precipitation": "tp",
    "total_precipitation_6hr": "tp06",
    "total_precipitation_24hr": "tp24",
    "sea_surface_temperature": "sst",
    "sea_ice_cover": "sic",
    "land_sea_mask": "lsm",
    "geopotential_at_surface": "z",
}


def _import_earth2studio() -> Any:
    try:
        import earth2studio
    except ImportError as err:
        raise ImportError(
            f"atmos.interop.earth2studio needs the earth2studio package, which cannot be imported "
            f"({type(err).__name__}: {err}). Install it with `{INSTALL_HINT}`."
        ) from err
    return earth2studio


def e2s_name(channel: str | Channel, names: Mapping[str, str] | None = None) -> str:
    """The earth2studio variable id of an atmos channel.

    Parameters
    ----------
    channel : str or Channel
        An atmos channel name (``"geopotential_500"``, ``"2m_temperature"``) or a :class:`Channel`.
    names : mapping, optional
        Overrides, atmos channel name -> earth2studio id (checked first).

    Returns
    -------
    str
        ``z500``, ``t2m``, ... ; the atmos channel name itself when earth2studio has no id for it.
    """
    c = channel if isinstance(channel, Channel) else Channel.parse(str(channel))
    if names and c.name in names:
        return str(names[c.name])
    if c.level is not None and c.variable in E2S_LEVELLED:
        return f"{E2S_LEVELLED[c.variable]}{c.level}"
    if c.level is None and c.variable in E2S_NAMES:
        return E2S_NAMES[c.variable]
    return c.name


def atmos_channel(e2s_id: str, names: Mapping[str, str] | None = None) -> Channel:
    """The atmos channel of an earth2studio variable id (the inverse of :func:`e2s_name`).

    Parameters
    ----------
    e2s_id : str
        ``"z500"``, ``"t2m"``, ``"lsm"``...; an atmos channel name is accepted as it is.
    names : mapping, optional
        Overrides, atmos channel name -> earth2studio id.

    Raises
    ------
    ConfigError
        ``e2s_id`` is neither an earth2studio id atmos knows nor an atmos channel name.
    """
    e2s_id = str(e2s_id)
    for atmos_name, e in (names or {}).items():
        if e == e2s_id:
            return Channel.parse(atmos_name)
    single = {v: k for k, v in E2S_NAMES.items()}
    if e2s_id in single:
        return Channel.of(single[e2s_id])
    for var, prefix in E2S_LEVELLED.items():
        rest = e2s_id[len(prefix) :]
        if e2s_id.startswith(prefix) and rest.isdigit():
            return Channel.of(var, int(rest))
    try:
        return Channel.parse(e2s_id)
    except (ValueError, LookupError):
        raise ConfigError(
            f"earth2studio variable {e2s_id!r} has no atmos name; known ids: "
            f"{sorted(single)} and {sorted(E2S_LEVELLED.values())} + a level (z500). Pass "
            f"names={{'<atmos channel>': {e2s_id!r}}}."
        ) from None


# -- xarray conversions ------------------------------------------------------------------------------


def _channels_dataset(
    values: np.ndarray, times: Any, channels: Sequence[Channel], lat: np.ndarray, lon: np.ndarray
) -> xr.Dataset:
    """Canonical dataset from ``values`` ``[T, C, nlat, nlon]`` (ascending ``lat``), one channel per ``C``."""
    t = pd.DatetimeIndex(times)
    by_var: dict[str, list[tuple[Any, int]]] = {}
    for k, c in enumerate(channels):
        by_var.setdefault(c.variable, []).append((c.level, k))
    coords = {
        "latitude": ("latitude", np.asarray(lat, np.float64)),
        "longitude": ("longitude", np.asarray(lon, np.float64)),
    }
    out: dict[str, xr.DataArray] = {}
    levels: set[Any] = set()
    for var, items in by_var.items():
        if items[0][0] is None:
            out[var] = xr.DataArray(values[:, items[0][1]], dims=("time", "latitude", "longitude"))
        else:
            lv = [lev for lev, _ in items]
            levels.update(lv)
            arr = np.stack([values[:, k] for _, k in items], axis=1)
            out[var] = xr.DataArray(
                arr, dims=("time", "level", "latitude", "longitude"), coords={"level": lv}
            )
    ds = xr.Dataset(out, coords={**coords, "time": t})
    if levels:
        ds = ds.reindex(level=sorted(levels))  # variables on fewer levels get NaN where absent
    return ds


def dataset_from_source(
    source: Any,
    time: Any,
    variables: Sequence[str] | Any,
    *,
    names: Mapping[str, str] | None = None,
    statics: Sequence[str] | None = None,
) -> xr.Dataset:
    """Call an earth2studio data source and return canonical atmos data.

    Parameters
    ----------
    source : earth2studio DataSource
        ``source(time, variable) -> xarray.DataArray [time, variable, lat, lon]`` (any
        latitude order, longitude 0..360 or -180..180).
    time : datetime-like or sequence of them
        The times to fetch (an initial time and the ``history - 1`` steps before it).
    variables : sequence of str, or a Forecaster
        atmos channel names (``["geopotential_500", "2m_temperature", "land_sea_mask"]``) or
        earth2studio ids (``["z500", "t2m", "lsm"]``); a :class:`~atmos.rollout.Forecaster`
        stands for its inputs and statics.
    names : mapping, optional
        atmos channel name -> earth2studio id, for channels :data:`E2S_NAMES` does not know.
    statics : sequence of str, optional
        Channels fetched once (at the first time) and stored without ``time``; default: the
        static variables of the atmos vocabulary (``land_sea_mask``, ``geopotential_at_surface``)
        and the Forecaster's statics.

    Returns
    -------
    xarray.Dataset
        Canonical (:func:`atmos.io.open.canonicalize`): variables ``[time, (level,) latitude,
        longitude]`` with ascending latitude, statics ``[latitude, longitude]``.

    Raises
    ------
    DataError
        The source's answer is not ``[time, variable, lat, lon]`` or lacks a requested variable.
    ConfigError
        A variable has no atmos name.
    """
    from atmos.io.open import canonicalize

    static_names = set(statics or ()) | {"land_sea_mask", "geopotential_at_surface"}
    if hasattr(variables, "channels") and hasattr(variables, "required_variables"):
        chans = [c for g in ("inputs", "statics") for c in variables.channels[g]]
        static_names |= {c.name for c in variables.channels["statics"]}
    else:
        if isinstance(variables, str):
            variables = [variables]
        chans = [atmos_channel(v, names) for v in variables]
    if not chans:
        raise ConfigError("dataset_from_source needs at least one variable; got none.")
    times = pd.DatetimeIndex(np.atleast_1d(pd.to_datetime(time)))
    dyn = [c for c in chans if c.name not in static_names and c.variable not in static_names]
    sta = [c for c in chans if c not in dyn]
    parts = []
    for group, t in ((dyn, times), (sta, times[:1])):
        if not group:
            continue
        ids = [e2s_name(c, names) for c in group]
        try:
            da = source(list(t.to_pydatetime()), ids)
        except KeyError as err:  # xarray-backed sources: .sel(variable=..., time=...) of absent labels
            raise DataError(
                f"the earth2studio data source {type(source).__name__} has no {ids} at {[str(x) for x in t]} "
                f"(KeyError: {err}); check the variable ids (see atmos.interop.earth2studio.E2S_NAMES) "
                "and the times."
            ) from None
        vals, lat, lon = _check_source_array(da, ids, t)
        ds = _channels_dataset(vals, t, group, lat, lon)
        if group is sta:
            ds = ds.isel(time=0, drop=True)
        parts.append(ds)
    ds = xr.merge(parts, compat="override", join="exact") if len(parts) > 1 else parts[0]
    ds.attrs["atmos_source"] = f"earth2studio data source {type(source).__name__}"
    return canonicalize(ds, "canonical", source=ds.attrs["atmos_source"])


def _check_source_array(
    da: Any, ids: list[str], times: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values [T, V, nlat, nlon] with ascending lat, lat, lon)`` of a data source's answer."""
    if not isinstance(da, xr.DataArray):
        raise DataError(
            f"the earth2studio data source returned {type(da).__name__}, not an xarray.DataArray "
            "[time, variable, lat, lon]; check the source."
        )
    lat_name = "lat" if "lat" in da.dims else "latitude" if "latitude" in da.dims else None
    lon_name = "lon" if "lon" in da.dims else "longitude" if "longitude" in da.dims else None
    if lat_name is None or lon_name is None or "variable" not in da.dims or "time" not in da.dims:
        raise DataError(
            f"the earth2studio data source returned dims {list(da.dims)}; atmos needs "
            "[time, variable, lat, lon] on a regular lat-lon grid (regrid curvilinear or HEALPix "
            "sources first)."
        )
    have = [str(v) for v in da["variable"].values]
    missing = [v for v in ids if v not in have]
    if missing:
        raise DataError(f"the earth2studio data source did not return {missing}; it returned {have}.")
    da = da.sel(variable=ids).transpose("time", "variable", lat_name, lon_name)
    lat = np.asarray(da[lat_name].values, np.float64)
    vals = np.asarray(da.values, np.float32)
    if lat.ndim != 1:
        raise DataError(
            "the earth2studio data source returned 2-D latitudes; regrid to a regular lat-lon grid first."
        )
    if len(lat) > 1 and lat[0] > lat[-1]:
        lat, vals = lat[::-1], vals[:, :, ::-1]
    if vals.shape[0] != len(times):
        raise DataError(
            f"the earth2studio data source returned {vals.shape[0]} times for the {len(times)} requested."
        )
    return np.ascontiguousarray(vals), lat, np.asarray(da[lon_name].values, np.float64)


def to_earth2studio(
    ds: xr.Dataset, channels: Sequence[str], *, names: Mapping[str, str] | None = None
) -> xr.DataArray:
    """A canonical atmos dataset as an earth2studio data array.

    Parameters
    ----------
    ds : xarray.Dataset
        Canonical atmos data (``[time, (level,) latitude, longitude]``, statics without time).
    channels : sequence of str
        atmos channel names (``"temperature_850"``, ``"land_sea_mask"``...).
    names : mapping, optional
        atmos channel name -> earth2studio id overrides.

    Returns
    -------
    xarray.DataArray ``[time, variable, lat, lon]`` float32
        ``variable`` holds earth2studio ids, ``lat`` descends from 90 to -90 (earth2studio's
        order); statics are repeated at every time. Save it with ``.to_netcdf`` and read it
        with ``earth2studio.data.DataArrayFile``.

    Raises
    ------
    DataError
        ``ds`` lacks a channel or a ``time`` coordinate.
    """
    if "time" not in ds.indexes:
        raise DataError("to_earth2studio needs a dataset with a time coordinate; it has none.")
    arrays = []
    ids = []
    for name in channels:
        var, level = split_name(str(name), ds)
        if var not in ds.data_vars:
            raise DataError(
                f"channel {name!r}: the dataset has no variable {var!r}; it has "
                f"{sorted(map(str, ds.data_vars))}."
            )
        da = ds[var]
        if level is not None:
            if "level" not in da.dims or level not in da["level"].values:
                raise DataError(f"channel {name!r}: variable {var!r} has no level {level}.")
            da = da.sel(level=level, drop=True)
        if "time" not in da.dims:
            da = da.expand_dims(time=ds.indexes["time"])
        arrays.append(da.transpose("time", "latitude", "longitude").astype(np.float32))
        ids.append(e2s_name(channel_name(var, level), names))
    out = xr.concat(arrays, dim=pd.Index(ids, name="variable"), coords="minimal", compat="override")
    out = out.transpose("time", "variable", "latitude", "longitude").rename(latitude="lat", longitude="lon")
    out = out.isel(lat=slice(None, None, -1))
    return out.drop_vars([c for c in out.coords if c not in ("time", "variable", "lat", "lon")])


# -- the prognostic model ----------------------------------------------------------------------------


class AtmosPrognostic:
    """An atmos checkpoint as an earth2studio prognostic model.

    Parameters
    ----------
    model : path, Forecaster or None
        A checkpoint folder written by ``atmos train`` (``Forecaster.from_checkpoint``), a
        :class:`~atmos.rollout.Forecaster`, or None for the embedded sample model (trained on
        SPEEDY-world, a simulated atmosphere).
    statics : xarray.Dataset, optional
        Canonical atmos data holding the model's static variables (``land_sea_mask``,
        ``geopotential_at_surface``...) on the lat-lon grid the earth2studio data come on (its
        ``latitude``/``longitude`` are this model's ``lat``/``lon`` coords; other variables are
        ignored, except ``toa_incident_solar_radiation`` with ``time``, see ``toa_calibration``).
        Default: the embedded sample initial conditions for the sample model; required for any
        other model with statics, or on HEALPix (where it sets the lat-lon grid).
    toa_calibration : atmos.rollout.ToaCalibration, optional
        How TOA insolation is computed from the valid time. Default: fitted like ``atmos rollout``
        does (:func:`atmos.rollout.calibrate_toa`) on the last 8 times of ``statics``'
        ``toa_incident_solar_radiation`` when it has one, else atmos' astronomy default
        (instantaneous flux, solar constant 1368 W m-2).
    names : mapping, optional
        atmos channel name -> earth2studio id, for channels :data:`E2S_NAMES` does not know.
    device : str
        Device of the atmos model (``"cpu"``, ``"cuda"``, ``"auto"``); :meth:`to` moves it.

    Notes
    -----
    Coordinates (earth2studio's ``CoordSystem``): ``batch`` (free), ``time`` (free), ``lead_time``
    (``-(history-1)*step .. 0``), ``variable`` (earth2studio ids of the model's prognostic channels),
    ``lat`` (descending, 90 -> -90), ``lon``. The adapter flips latitude to atmos' ascending order
    and back. :meth:`create_iterator` keeps the atmos state between steps (a recurrent model's
    hidden state and its reset cycle, as ``atmos rollout``); :meth:`__call__` is one step from the
    given history alone (a recurrent model's state starts from zero).

    Raises
    ------
    ImportError
        earth2studio is not installed (``pip install "atmos[earth2studio]"``).
    ConfigError
        The model needs statics and none were given, or a forcing that cannot be computed
        from time alone.
    """

    def __init__(
        self,
        model: str | os.PathLike | Any = None,
        *,
        statics: xr.Dataset | None = None,
        toa_calibration: Any = None,
        names: Mapping[str, str] | None = None,
        device: str = "cpu",
    ) -> None:
        _import_earth2studio()
        from atmos.rollout import Forecaster

        self._source = model
        if isinstance(model, Forecaster):
            fc = model
        elif model is None or isinstance(model, (str, os.PathLike)):
            fc = Forecaster.from_checkpoint(model, device=device)
        else:
            raise ConfigError(
                f"model must be a checkpoint path, an atmos.rollout.Forecaster or None (the sample), got "
                f"{type(model).__name__}."
            )
        self.forecaster = fc
        self.names = dict(names or {})
        self.channels: list[Channel] = list(fc.channels["targets"])
        self.variables = np.array([e2s_name(c, self.names) for c in self.channels])
        dup = sorted({v for v in self.variables.tolist() if self.variables.tolist().count(v) > 1})
        if dup:
            raise ConfigError(
                f"earth2studio ids {dup} stand for several atmos channels; pass names= to tell them apart."
            )
        self.statics = self._statics(model, statics)
        self.lat, self.lon = self._grid()
        self.dt = fc.step.to_timedelta64().astype("timedelta64[ns]")
        self.history = int(fc.history)
        self.toa_calibration = self._toa(toa_calibration)
        self._context = self._build_context()
        self.forcing_notes = dict(self._context.forcing_notes)

    def __repr__(self) -> str:
        return (
            f"AtmosPrognostic({self.forecaster.name!r}, step={pd.Timedelta(self.dt)}, "
            f"history={self.history}, "
            f"variables={self.variables.tolist()}, grid={len(self.lat)}x{len(self.lon)})"
        )

    def __str__(self) -> str:
        return f"atmos:{self.forecaster.name}"

    # -- construction helpers --------------------------------------------------------------------
    def _statics(self, model: Any, statics: xr.Dataset | None) -> xr.Dataset | None:
        fc = self.forecaster
        need = [c.variable for c in fc.channels["statics"]]
        if statics is None and _is_sample(fc):
            from atmos.rollout.sample import sample_data_path

            statics = xr.open_dataset(sample_data_path())
        if statics is None:
            from atmos.grids import HealpixGrid

            if need or isinstance(fc.model_grid, HealpixGrid):
                what = f"its statics {sorted(set(need))}" if need else "a lat-lon grid (it runs on HEALPix)"
                raise ConfigError(
                    f"model {fc.name!r} needs {what}, and no statics were given. Pass statics= a "
                    "dataset on the grid of the earth2studio data, e.g. statics=atmos.io.open_dataset(path)["
                    f"{sorted(set(need)) or ['land_sea_mask']}], or dataset_from_source(source, time, "
                    f"{sorted(set(need)) or ['lsm']})."
                )
            return None
        if not isinstance(statics, xr.Dataset):
            raise ConfigError(f"statics must be an xarray.Dataset, got {type(statics).__name__}.")
        from atmos.io.open import canonicalize

        statics = canonicalize(statics)
        missing = sorted({v for v in need if v not in statics.data_vars})
        if missing:
            raise DataError(
                f"the statics dataset lacks {missing} that model {fc.name!r} needs; it has "
                f"{sorted(map(str, statics.data_vars))}. Pass a dataset holding {sorted(set(need))}."
            )
        keep = list(
            dict.fromkeys(
                need + (["toa_incident_solar_radiation"] if "toa_incident_solar_radiation" in statics else [])
            )
        )
        out = statics[keep] if keep else statics[[]]
        for v in need:
            if "time" in out[v].dims:
                out[v] = out[v].isel(time=0, drop=True)
        return out.load()

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Ascending ``lat`` ``[nlat]`` and ``lon`` ``[nlon]`` of the data grid."""
        if self.statics is not None:
            if "latitude" not in self.statics.coords or "longitude" not in self.statics.coords:
                raise DataError(
                    "the statics dataset is not on a lat-lon grid (no latitude/longitude); earth2studio "
                    "data are lat-lon: pass statics on that grid (ds.atmos.to_latlon)."
                )
            return (
                np.asarray(self.statics["latitude"].values, np.float64),
                np.asarray(self.statics["longitude"].values, np.float64),
            )
        g = self.forecaster.model_grid
        return np.asarray(g.lat, np.float64), np.asarray(g.lon, np.float64)

    def _toa(self, cal: Any) -> Any:
        from atmos.rollout.forcings import TOA_NAME, ToaCalibration, calibrate_toa

        if cal is not None:
            if not isinstance(cal, ToaCalibration):
                raise ConfigError(
                    f"toa_calibration must be an atmos.rollout.ToaCalibration, got {type(cal).__name__}."
                )
            return cal
        st = self.statics
        if st is not None and TOA_NAME in st.data_vars and "time" in st[TOA_NAME].dims:
            da = st[TOA_NAME].isel(time=slice(-8, None)).transpose("time", "latitude", "longitude")
            lat, lon = np.meshgrid(self.lat, self.lon, indexing="ij")
            try:
                return calibrate_toa(np.asarray(da.values, np.float64), da["time"].values, lat, lon)
            except DataError as err:
                raise DataError(
                    f"the statics dataset's {TOA_NAME} cannot be fitted by astronomy ({err}); drop it from "
                    "statics, or pass toa_calibration=atmos.rollout.ToaCalibration(kind=..., scale=...)."
                ) from None
        return ToaCalibration()

    def _build_context(self) -> Any:
        """A data context on the data grid: regridders, normalized statics, forcing functions."""
        from atmos.io.forcings import DERIVED_FORCINGS
        from atmos.rollout.context import build_context
        from atmos.rollout.forcings import TOA_NAME

        fc = self.forecaster
        for c in fc.channels["forcings"]:
            if not (c.source == "derived" or c.name in DERIVED_FORCINGS or c.variable == TOA_NAME):
                raise ConfigError(
                    f"forcing {c.name!r} of model {fc.name!r} is read from data at future times; the "
                    "earth2studio adapter computes forcings from time only (TOA insolation, time encodings). "
                    "Roll this model out with atmos.rollout.rollout(..., forcings='data') instead."
                )
        t0 = np.datetime64("2000-01-01T00", "ns")
        tmpl = self._dataset(
            np.zeros((1, len(fc.channels["inputs"]), len(self.lat), len(self.lon)), np.float32), [t0]
        )
        ctx = build_context(
            fc,
            tmpl,
            t0,
            "astronomy" if any(c.variable == TOA_NAME for c in fc.channels["forcings"]) else "auto",
        )
        cal = self.toa_calibration
        for k, c in enumerate(fc.channels["forcings"]):
            if c.variable == TOA_NAME and c.source != "derived":
                lat, lon, mean, std = ctx.model_lat, ctx.model_lon, c.mean, c.std
                ctx.forcing_fns[k] = lambda t, cal=cal, lat=lat, lon=lon, mean=mean, std=std: (
                    (cal(t, lat, lon) - mean) / std
                ).astype(np.float32)
                ctx.forcing_notes[c.name] = cal.describe()
        return ctx

    def _dataset(self, values: np.ndarray, times: Any) -> xr.Dataset:
        """Canonical dataset: inputs ``values`` ``[T, C_in, nlat, nlon]`` (ascending lat) + statics."""
        ds = _channels_dataset(values, times, self.forecaster.channels["inputs"], self.lat, self.lon)
        if self.statics is not None:
            need = [c.variable for c in self.forecaster.channels["statics"]]
            ds = ds.assign(
                {v: self.statics[v].assign_coords(latitude=ds.latitude, longitude=ds.longitude) for v in need}
            )
        ds.attrs["atmos_source"] = "earth2studio input tensor"
        return ds

    # -- earth2studio protocol ------------------------------------------------------------------------
    def input_coords(self) -> OrderedDict[str, np.ndarray]:
        """Input coordinate system: ``batch``, ``time`` (free), ``lead_time`` ``[history]``,
        ``variable`` ``[C]``, ``lat`` ``[nlat]`` (descending), ``lon`` ``[nlon]``."""
        lead = np.array(
            [-(self.history - 1 - k) * self.dt for k in range(self.history)], dtype="timedelta64[ns]"
        )
        return OrderedDict(
            batch=np.empty(0),
            time=np.empty(0),
            lead_time=lead,
            variable=self.variables.copy(),
            lat=self.lat[::-1].copy(),
            lon=self.lon.copy(),
        )

    def output_coords(self, input_coords: Mapping[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        """Output coordinate system one step after ``input_coords`` (``lead_time`` = last + step).

        Raises
        ------
        ValueError
            ``input_coords`` do not end with ``time, lead_time, variable, lat, lon`` matching
            :meth:`input_coords` (earth2studio's convention: a ``ValueError``).
        """
        self._check_coords(input_coords)
        out = OrderedDict((k, np.asarray(v)) for k, v in input_coords.items())
        out["lead_time"] = np.asarray(input_coords["lead_time"])[-1:] + self.dt
        return out

    def _check_coords(self, coords: Mapping[str, np.ndarray], shape: Sequence[int] | None = None) -> int:
        """Checks ``coords`` (and a tensor shape); returns the number of leading batch dims."""
        keys = list(coords)
        tail = ["time", "lead_time", "variable", "lat", "lon"]
        if keys[-5:] != tail:
            raise DataError(f"coordinates must end with {tail}, got {keys}; fetch data with input_coords().")
        want = self.input_coords()
        lead = np.asarray(coords["lead_time"]).astype("timedelta64[ns]")
        if len(lead) != self.history or np.any(lead - lead[-1] != want["lead_time"]):
            raise DataError(
                f"lead_time {lead.tolist()} does not match the model's history {want['lead_time'].tolist()} "
                f"(relative to the last; step {pd.Timedelta(self.dt)})."
            )
        for k in ("variable", "lat", "lon"):
            got = np.asarray(coords[k])
            ok = got.shape == want[k].shape and (
                np.array_equal(got, want[k])
                if k == "variable"
                else np.allclose(got.astype(np.float64), want[k])
            )
            if not ok:
                raise DataError(
                    f"coordinate {k!r} is {_show(got, k)}; the model needs {_show(want[k], k)} "
                    "(lat descending, 90 -> -90). Map the data first, e.g. "
                    "earth2studio.utils.coords.map_coords(x, coords, model.input_coords())."
                )
        if shape is not None:
            exp = [len(np.asarray(v)) for v in coords.values()]
            if list(shape) != exp:
                raise DataError(
                    f"tensor shape {list(shape)} does not match the coordinates {dict(zip(keys, exp))}."
                )
        return len(keys) - 5

    def _states(self, x: Any, coords: Mapping[str, np.ndarray]) -> tuple[list[Any], tuple[int, ...]]:
        """One batched RolloutState per ``time``: ``x`` ``[*batch, T, H, C, nlat(desc), nlon]``."""
        import torch

        nb = self._check_coords(coords, tuple(x.shape))
        bshape = tuple(x.shape[:nb])
        arr = (
            x.detach().float().cpu().numpy().reshape(-1, *x.shape[nb:])[..., ::-1, :]
        )  # [B, T, H, C, lat asc, lon]
        times = np.asarray(coords["time"]).astype("datetime64[ns]")
        lead = np.asarray(coords["lead_time"]).astype("timedelta64[ns]")
        states = []
        fc = self.forecaster
        for i, t in enumerate(times):
            valid = t + lead  # the history's valid times
            members = []
            for b in range(arr.shape[0]):
                ds = self._dataset(np.ascontiguousarray(arr[b, i]), valid)
                ctx = dataclasses.replace(self._context, ds=ds, data_times=pd.DatetimeIndex(valid))
                members.append(fc.encode(ds, valid[-1], context=ctx))
            s = members[0]
            if len(members) > 1:
                s = dataclasses.replace(s, history=torch.cat([m.history for m in members], dim=0))
            states.append(s)
        return states, bshape

    def _output(self, states: list[Any], bshape: tuple[int, ...], like: Any) -> Any:
        """``[*batch, T, 1, C, nlat(desc), nlon]`` tensor of the states' newest fields."""
        import torch

        n = len(self.channels)
        out = np.stack([self.forecaster.decode(s)[:, :n] for s in states], axis=1)  # [B, T, C, lat asc, lon]
        out = np.ascontiguousarray(out[..., ::-1, :])[:, :, None]
        ten = torch.from_numpy(out).to(
            device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32
        )
        return ten.reshape(*bshape, *ten.shape[1:]) if bshape else ten[0]

    def __call__(self, x: Any, coords: Mapping[str, np.ndarray]) -> tuple[Any, OrderedDict[str, np.ndarray]]:
        """One model step.

        Parameters
        ----------
        x : torch.Tensor ``[*batch, time, history, variable, lat, lon]``
        coords : CoordSystem
            Matching ``x``, see :meth:`input_coords`.

        Returns
        -------
        (torch.Tensor ``[*batch, time, 1, variable, lat, lon]``, CoordSystem)
            The state one step later (``lead_time`` + step), on ``x``'s device.
        """
        states, bshape = self._states(x, coords)
        nxt = [self.forecaster.advance(s) for s in states]
        return self._output(nxt, bshape, x), self.output_coords(coords)

    def create_iterator(
        self, x: Any, coords: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[Any, OrderedDict[str, np.ndarray]]]:
        """Time integration: yields the initial state (lead ``lead_time[-1]``), then one step at a time.

        Parameters
        ----------
        x : torch.Tensor ``[*batch, time, history, variable, lat, lon]``
        coords : CoordSystem

        Yields
        ------
        (torch.Tensor ``[*batch, time, 1, variable, lat, lon]``, CoordSystem)
            The atmos state is kept between steps (recurrent state, reset cycle), exactly as in
            :func:`atmos.rollout.rollout`.
        """
        states, bshape = self._states(x, coords)
        out_coords = OrderedDict((k, np.asarray(v)) for k, v in coords.items())
        out_coords["lead_time"] = np.asarray(coords["lead_time"]).astype("timedelta64[ns]")[-1:]
        yield self._output(states, bshape, x), out_coords.copy()
        while True:
            states = [self.forecaster.advance(s) for s in states]
            out_coords["lead_time"] = out_coords["lead_time"] + self.dt
            yield self._output(states, bshape, x), out_coords.copy()

    def to(self, device: Any) -> AtmosPrognostic:
        """Run the atmos model on ``device`` (reloads the checkpoint there when it was built from a path).

        Raises
        ------
        ConfigError
            The adapter wraps a Forecaster instance on another device: build the Forecaster on
            ``device`` (``Forecaster.from_checkpoint(path, device=...)``) instead.
        """
        import torch

        from atmos.rollout import Forecaster
        from atmos.rollout.loading import resolve_device

        dev = resolve_device(str(torch.device(device)) if not isinstance(device, str) else device)
        if dev == self.forecaster.device:
            return self
        if isinstance(self._source, Forecaster):
            raise ConfigError(
                f"the wrapped Forecaster runs on {self.forecaster.device}, not {dev}; build it on that "
                "device (Forecaster.from_checkpoint(path, device=...)) or pass the checkpoint path to "
                "AtmosPrognostic."
            )
        self.forecaster = Forecaster.from_checkpoint(self._source, device=str(dev))
        self._context = self._build_context()
        return self


def _show(values: np.ndarray, key: str) -> str:
    """A coordinate for an error message: the variable ids, or the size and first values."""
    if key == "variable":
        return str(values.tolist())
    return f"{len(values)} values {np.round(values[:2].astype(np.float64), 4).tolist()}..."


def _is_sample(fc: Any) -> bool:
    """Whether ``fc`` was loaded from the embedded sample checkpoint."""
    from atmos.rollout.sample import is_sample_checkpoint

    return is_sample_checkpoint(fc.info.get("atmos_checkpoint", ""))
