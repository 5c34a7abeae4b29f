"""The :class:`Forecaster`: ``encode / advance / decode / unroll`` on tensors, xarray at the boundary.

A Forecaster wraps a one-step model (:mod:`atmos.models`: ``(inputs, forcings, statics, state)
-> (residual, new_state)``) with its channels and their statistics, its time step and its grid.
``encode`` reads, regrids, normalizes and perturbs the initial state (a
:class:`~atmos.rollout.state.RolloutState`); ``advance`` makes one model step (forcings from
:mod:`atmos.rollout.context`; NaN/Inf raise naming the step and variable); ``decode`` gives
the newest state in physical units on the data's grid; ``unroll`` yields consecutive advances.
With decoders attached (:mod:`atmos.rollout.decoders`) each step runs ``forward_latent`` +
``decode_latent`` (the operations of ``forward``: a bit-identical trajectory) and the decoders
diagnose new variables from the latent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from atmos.channels import Channel
from atmos.errors import ConfigError
from atmos.grids import Grid
from atmos.io.normalizer import Normalizer
from atmos.io.seasonal import load_seasonal
from atmos.rollout.checks import check_finite, history_times
from atmos.rollout.context import DataContext, build_context, forcings_at, with_noise
from atmos.rollout.decoders import DecoderAttachment, append_diagnostics
from atmos.rollout.loading import (
    check_seasonal,
    checkpoint_info,
    checkpoint_path,
    model_info,
    resolve_device,
)
from atmos.rollout.perturbation import Perturbation, PerturbationNoise
from atmos.rollout.reading import normalize, read_channels
from atmos.rollout.state import RolloutState
from atmos.rollout.tables import GROUPS, channels_from_meta, channels_from_stats, check_model, model_grid
from atmos.rollout.times import as_timedelta, reset_steps

__all__ = ["Forecaster"]


class Forecaster(DecoderAttachment):
    """A one-step model ready to roll out on data.

    Build it with :meth:`from_checkpoint` (a folder written by ``atmos train``, or the
    embedded sample) or :meth:`from_model` (any registered model plus statistics).

    Parameters
    ----------
    model : nn.Module
        A model with ``schema`` (:class:`atmos.models.schema.ChannelSchema`) and
        ``grid``, called as ``model(inputs, forcings, statics, state)``.
    channels : dict
        ``{"inputs", "targets", "forcings", "statics"}`` -> list of :class:`Channel`,
        in the model's channel order.
    step : timedelta-like
        Model time step.
    model_grid : Grid
        The grid the model runs on.
    normalization : {"residual", "state"}
        Output convention: ``x[t+1] = x[t] + out * residual_std / std`` (normalized) or
        ``x[t+1] = out``.
    name : str
        Short name (used in default output names and attributes).
    info : dict
        Provenance recorded in the output (checkpoint path and hash, model type...).
    regrid_method : str
        Method for regridding between the data's and the model's grids.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    grid_from_schema : bool
        ``model_grid`` was inferred from the model's shape only: lat-lon data of that
        shape are used as they are.
    state_reset : timedelta-like, None or "auto"
        Reset a recurrent model's state (``state=None``) every this often after the
        initial time (the trainer starts every window from ``None``); ``"auto"``: 24 h
        for recurrent models (DLWP-HPX's reset cycle), never for the others.
    decoders : path, LatentDecoder or a list of them, optional
        Lightweight decoders for new variables, see :meth:`attach_decoders`.
    seasonal : atmos.io.seasonal.SeasonalCycle, optional
        The model works on anomalies from this seasonal cycle (``data.seasonal_harmonics``):
        :meth:`encode` subtracts ``c(t)`` from the normalized inputs, :meth:`decode` adds it back.
    noise_channels : int
        A stochastic model's noise inputs (``data.noise_channels``): appended to the forcings
        of every step, drawn per member from the state's seed, step and member, so members
        differ without an initial perturbation and a given seed reproduces them.
    """

    def __init__(
        self,
        model: nn.Module,
        channels: Mapping[str, list[Channel]],
        *,
        step: Any,
        model_grid: Grid,
        normalization: str = "residual",
        name: str = "model",
        info: Mapping[str, Any] | None = None,
        regrid_method: str = "bilinear",
        device: str = "cpu",
        grid_from_schema: bool = False,
        state_reset: Any = "auto",
        decoders: Any = None,
        seasonal: Any = None,
        noise_channels: int = 0,
    ) -> None:
        from atmos.models.noise import noise_names

        self.channels = {g: list(channels.get(g, [])) for g in GROUPS}
        self.noise_channels = int(noise_channels)
        noise = [Channel(n, n, None, "1", "noise", mean=0.0, std=1.0) for n in noise_names(self.noise_channels)]
        check_model(model, {**self.channels, "forcings": [*self.channels["forcings"], *noise]}, normalization)
        self.normalization = normalization
        self.normalizer = Normalizer(self.channels["targets"], normalization)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.schema = model.schema
        self.step = as_timedelta(step, "the model time step")
        self.history = int(self.schema.history)
        self.model_grid = model_grid
        # a grid known only by its shape (models built without a checkpoint) matches any data grid of that shape
        self.grid_from_schema = bool(grid_from_schema)
        self.model_shape = tuple(int(s) for s in model.grid)
        self.name = str(name)
        self.info = dict(info or {})
        self.regrid_method = regrid_method
        self.normalizer = self.normalizer.to(self.device)
        self.seasonal = check_seasonal(seasonal, self.channels["inputs"], self.device)
        self._noise = PerturbationNoise(model_grid)
        recurrent = bool(model.recurrent)
        self.state_reset, self.state_reset_steps = reset_steps(state_reset, recurrent, self.step)
        if recurrent:
            self.info["atmos_state_reset"] = (
                f"recurrent state reset to zero every {self.state_reset}" if self.state_reset else "never reset"
            )
        self.decoders: list[nn.Module] = []
        self.channels["diagnostics"] = []
        self._decoder_info: list[dict[str, Any]] = []
        if decoders is not None:
            self.attach_decoders(decoders)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        state_reset: Any = "auto",
        decoders: Any = None,
    ) -> Forecaster:
        """Load a checkpoint folder written by ``atmos train`` (None = the embedded sample model).

        The model is built by :func:`atmos.models.checkpoint.load_model`;
        ``info["atmos_checkpoint_sha256"]`` is its :func:`~atmos.models.checkpoint.weights_hash`,
        the same as :meth:`from_model` records for the same weights.
        ``decoders``: decoder checkpoints (or modules) to attach, see :meth:`attach_decoders`.
        """
        from atmos.models.checkpoint import find_checkpoint, load_model
        from atmos.rollout.sample import sample_checkpoint_dir

        p = checkpoint_path(sample_checkpoint_dir() if path is None else path)
        model, meta = load_model(p)
        folder = find_checkpoint(p)
        assert folder is not None  # load_model found it
        channels = channels_from_meta(meta)
        grid = model_grid(model, meta.grid)
        name = meta.name or folder.name
        step = pd.Timedelta(seconds=meta.time_step_seconds) if meta.time_step_seconds else "6h"
        seasonal = load_seasonal(folder, meta)
        data_cfg = meta.config.get("data") or {}
        return cls(
            model,
            channels,
            step=step,
            model_grid=grid,
            normalization=meta.output_normalization,
            name=name,
            info=checkpoint_info(model, meta, folder, name),
            regrid_method=data_cfg.get("regrid_method", "bilinear"),
            device=device,
            state_reset=state_reset,
            decoders=decoders,
            seasonal=seasonal,
            noise_channels=int(data_cfg.get("noise_channels") or 0),
        )

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        stats: xr.Dataset,
        *,
        step: Any = "6h",
        normalization: str = "residual",
        name: str | None = None,
        data: xr.Dataset | None = None,
        regrid_method: str = "bilinear",
        device: str = "cpu",
        state_reset: Any = "auto",
        decoders: Any = None,
    ) -> Forecaster:
        """Wrap a model built with :func:`atmos.models.build` and statistics from
        :func:`atmos.io.stats.compute_stats` (channel names ``variable`` or ``variable_level``);
        ``decoders`` as in :meth:`attach_decoders`."""
        channels = channels_from_stats(model, stats, data)
        name = name or type(model).__name__.lower()
        return cls(
            model,
            channels,
            step=step,
            model_grid=model_grid(model, None),
            normalization=normalization,
            name=name,
            info=model_info(model, name, "none (in-memory model)", type(model).__name__),
            regrid_method=regrid_method,
            device=device,
            grid_from_schema=True,
            state_reset=state_reset,
            decoders=decoders,
        )

    def __repr__(self) -> str:
        return (
            f"Forecaster({self.name!r}, {self.info.get('atmos_model_type')}, step={self.step}, "
            f"grid={self.model_grid!r}, outputs={len(self.channels['targets'])} channels"
            + (f", diagnostics={self.diagnostic_variables}" if self.decoders else "")
            + ")"
        )

    @property
    def output_variables(self) -> list[str]:
        """Variables of the forecast (canonical names, in first-channel order)."""
        return list(dict.fromkeys(c.variable for c in self.channels["targets"]))

    @property
    def required_variables(self) -> list[str]:
        """Dataset variables the initial conditions must have (prognostics, dataset forcings, statics)."""
        names = [c.variable for g in ("inputs", "statics") for c in self.channels[g]]
        return list(dict.fromkeys(names))

    # -- encode / advance / decode / unroll --------------------------------------------------------
    def encode(
        self,
        data: xr.Dataset,
        init: Any,
        *,
        members: int = 1,
        perturbation: Perturbation | None = None,
        seed: int = 0,
        forcings: str = "auto",
        context: DataContext | None = None,
    ) -> RolloutState:
        """Initial state at ``init`` from a canonical dataset.

        Parameters
        ----------
        data : xarray.Dataset
            Canonical data holding the model's variables at ``init`` and the
            ``history - 1`` steps before it, and its statics.
        init : datetime-like
        members : int
            Batch size: ensemble members (identical unless perturbed).
        perturbation : Perturbation, optional
        seed : int
            Seed of the perturbation noise (the same seed gives the same members).
        forcings : {"auto", "astronomy", "data"}
            How forcings are produced for future times (see :mod:`atmos.rollout.forcings`).
        context : DataContext, optional
            A context from an earlier :meth:`encode` on the same data, or from
            :func:`atmos.rollout.context.build_context` (reuses statics, regridders and the
            forcing calibration).

        Returns
        -------
        RolloutState
            ``history`` ``[members, history, C_in, *model_grid]``, normalized.
        """
        if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
            raise ConfigError(f"members must be an integer >= 1, got {members!r}.")
        t0 = np.datetime64(pd.Timestamp(init).to_datetime64(), "ns")
        ctx = context if context is not None else build_context(self, data, t0, forcings)
        times = self.check_init(ctx.data_times, t0)
        raw = torch.from_numpy(read_channels(ctx.ds, self.channels["inputs"], times)).to(self.device)
        hist = normalize(ctx.to_model(raw), self.channels["inputs"], len(self.model_shape))  # [H, C, *grid]
        if self.seasonal is not None:
            hist = hist - self.seasonal.offset(times.values.astype("datetime64[ns]").astype(np.int64)).to(hist)
        hist = hist.unsqueeze(0).expand(members, *hist.shape).clone()
        if perturbation is not None and perturbation.scale > 0:
            hist = hist + self._noise(hist.shape, perturbation, seed).to(self.device)
        return RolloutState(history=hist, time=t0, init=t0, step=0, carry=None, context=ctx, seed=int(seed))

    def check_init(self, data_times: pd.DatetimeIndex, init: Any) -> pd.DatetimeIndex:
        """The ``history`` input times ``init - (history-1) step .. init``, checked against ``data_times``
        (:func:`atmos.rollout.checks.history_times`; a ``DataError`` says which time is missing and why)."""
        return history_times(data_times, init, self.history, self.step)

    @torch.inference_mode()
    def advance(self, state: RolloutState) -> RolloutState:
        """One model step: the state at ``state.time + step``.

        Raises
        ------
        DataError
            The new state has NaN or Inf values (names the step, valid time, variable).
        """
        ctx = state.context
        if ctx is None:
            raise ConfigError("this RolloutState has no data context; create states with Forecaster.encode.")
        hist = state.history
        forc = forcings_at(ctx, state.time, self.history, self.step, hist.shape[0], self.device)
        if self.noise_channels:
            forc = with_noise(forc, state, self.history, self.noise_channels, self.model_shape, self.device)
        carry_in = state.carry
        if self.state_reset_steps and state.step % self.state_reset_steps == 0:
            carry_in = None  # recurrent state reset (DLWP-HPX resets its GRU every 24 h)
        diag = None
        if self.decoders:
            # forward == decode_latent(forward_latent(...)): the same operations, a bit-identical trajectory
            latent, carry = self.model.forward_latent(hist, forc, ctx.statics, carry_in)
            out = self.model.decode_latent(latent)
            diag = torch.cat([d.to_physical(d(latent)) for d in self.decoders], dim=1).float()
        else:
            out, carry = self.model(hist, forc, ctx.statics, carry_in)
        nxt = self.normalizer.step(hist[:, -1], out.float())
        new_time = state.time + self.step.to_timedelta64()
        where = {"init": state.init, "step": state.step + 1, "time": new_time}
        check_finite(nxt, self.channels["targets"], **where)
        if diag is not None:
            check_finite(diag, self.channels["diagnostics"], diagnostics=True, **where)
        new_hist = torch.cat([hist[:, 1:], nxt.unsqueeze(1).to(hist.dtype)], dim=1)
        return RolloutState(new_hist, new_time, state.init, state.step + 1, carry, ctx, diag, state.seed)

    @torch.inference_mode()
    def decode(self, state: RolloutState, *, native: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The newest state in physical units on the data's grid.

        Returns
        -------
        numpy.ndarray ``[B, C_out + V, *data_grid]`` float32 (``*data_grid`` = ``(nlat, nlon)``
        or ``(npix,)``): the prognostic channels, then the ``V`` variables diagnosed by the
        attached decoders (``channels["diagnostics"]``; NaN at the initial state); with
        ``native=True`` also the model-grid fields ``[B, C_out + V, npix]`` (HEALPix cells,
        nested) or ``[B, C_out + V, nlat, nlon]``.
        """
        ctx = state.context
        if ctx is None:
            raise ConfigError("this RolloutState has no data context; create states with Forecaster.encode.")
        x = state.history[:, -1, : len(self.channels["targets"])]
        if self.seasonal is not None:
            x = x + self.seasonal.offset(np.asarray([state.time], "datetime64[ns]").astype(np.int64))[:, : x.shape[1]].to(x)
        phys = self.normalizer.denormalize(x)
        out = ctx.to_data(phys).float().cpu().numpy()
        nat = None
        if native:
            nat = ctx.to_native_cells(phys) if ctx.to_native_cells is not None else phys
            nat = nat.float().cpu().numpy()
        if self.decoders:
            # diagnostics regridded on their own, so the prognostics go through exactly the same call as without
            n = len(self.channels["diagnostics"])
            out, nat = append_diagnostics(state.diagnostics, ctx, out, nat, n, self.device)
        if not native:
            return out
        return out, nat

    def unroll(self, state: RolloutState, steps: int) -> Iterator[RolloutState]:
        """Yield the states after each of ``steps`` model steps (the initial state is not yielded)."""
        for _ in range(int(steps)):
            state = self.advance(state)
            yield state

