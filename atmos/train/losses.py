"""Area-weighted MSE in normalized units, with per-variable and per-level weights.

For a prediction ``p`` and target ``y`` of shape ``[B, C, *grid]``::

    L = mean_b  sum_c w_c  sum_g a_g ((p - y) / s_c)^2  /  sum_c w_c

with ``a_g`` the normalized cell areas of the grid (summing to 1: the same weights as
:func:`atmos.io.coords.area_weights` and the evaluation metrics), ``w_c`` the channel
weight (variable weight times pressure-level weight) and ``s_c`` an optional
per-channel scale (e.g. residual std / state std when ``p`` and ``y`` are normalized
states: then the loss is the error in units of the residual std).

``loss.name: amse`` replaces the MSE of each channel by the adjusted MSE of Subich et al.
(2025, "Fixing the double penalty in data-driven weather forecasting through a modified
spherical harmonic loss function", arXiv:2501.19374), computed on spherical-harmonic
coefficients (:class:`SpectralAMSE`): per degree ``l`` with powers ``P_l``, ``T_l`` of
prediction and target and cross power ``X_l``::

    AMSE = sum_l (sqrt(P_l) - sqrt(T_l))^2 + 2 max(P_l, T_l) (1 - X_l / sqrt(P_l T_l))

The MSE is the same sum with ``2 sqrt(P_l T_l)`` in place of ``2 max(P_l, T_l)``: it rewards
damping the amplitude of scales the model cannot place (the blur of long MSE-trained
rollouts); AMSE does not, and it keeps the MSE's units. The error above the transform's
highest degree (the area-weighted MSE minus the resolved part) is added as plain MSE, so that
no scale goes unpenalized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from atmos.errors import ConfigError, GridError

__all__ = [
    "AreaWeightedMSE",
    "SpectralAMSE",
    "build_loss",
    "channel_weights",
    "grid_area_weights",
    "level_weight",
    "weighted_mse",
    "AreaWeightedCRPS",
]


def level_weight(level: float | None, mode: str = "linear") -> float:
    """Loss weight of a pressure level (hPa); 1 for single-level variables.

    ``linear``: ``0.2 + 0.001 p``; ``relu``: ``max(0.2, 0.001 p)`` (anemoi's pressure
    level scalers); ``none``: 1.
    """
    if level is None or mode == "none":
        return 1.0
    p = float(level)
    if mode == "linear":
        return 0.2 + 0.001 * p
    if mode == "relu":
        return max(0.2, 0.001 * p)
    raise ConfigError(f"level weighting must be 'linear', 'relu' or 'none', got {mode!r}.")


def channel_weights(
    channels: Sequence[tuple[str, float | None]],
    variable_weights: Mapping[str, float] | None = None,
    level_weighting: str = "linear",
) -> torch.Tensor:
    """Weights ``w_c`` of each ``(variable, level or None)`` channel, shape ``[C]``.

    ``variable_weights`` maps names to weights, with ``default`` for unlisted ones
    (1 when absent).
    """
    vw = dict(variable_weights or {})
    default = float(vw.get("default", 1.0))
    w = [float(vw.get(name, default)) * level_weight(level, level_weighting) for name, level in channels]
    out = torch.tensor(w, dtype=torch.float32)
    if out.numel() and out.sum() <= 0:
        raise ConfigError(
            f"all channel loss weights are 0 for channels {list(channels)}; check loss.variable_weights."
        )
    return out


def grid_area_weights(grid) -> torch.Tensor:
    """Normalized cell areas of an atmos grid (``LatLonGrid`` ``[nlat, nlon]``, ``HealpixGrid`` ``[npix]``)."""
    w = np.asarray(grid.area_weights(), dtype=np.float64)
    return torch.as_tensor(w / w.sum(), dtype=torch.float32)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Area-weighted mean squared error over the trailing grid dims.

    Parameters
    ----------
    pred, target : Tensor ``[..., *grid]``
    area : Tensor ``[*grid]``
        Weights summing to 1.

    Returns
    -------
    Tensor ``[...]``
        ``sum_g a_g (pred - target)^2`` (float32 or wider).
    """
    nd = area.ndim
    if tuple(pred.shape[-nd:]) != tuple(area.shape) or pred.shape != target.shape:
        raise GridError(
            f"weighted_mse: expected pred and target [..., {tuple(area.shape)}] of equal shape, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    err = (pred.float() - target.float()) ** 2
    return (err * area.to(err.dtype)).flatten(-nd).sum(-1)


class AreaWeightedMSE(nn.Module):
    """Area-weighted, channel-weighted MSE (see the module docstring).

    Parameters
    ----------
    area : Tensor ``[*grid]``
        Cell weights (normalized to sum 1 here); None weighs cells equally.
    channel_weight : Tensor ``[C]``, optional
        ``w_c`` (default 1).
    scale : Tensor ``[C]``, optional
        ``s_c``: errors are divided by it (default 1).
    grid_shape : tuple, optional
        Spatial shape, needed when ``area`` is None.
    """

    def __init__(
        self,
        area: torch.Tensor | None,
        channel_weight: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        grid_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if area is None:
            if grid_shape is None:
                raise ValueError("AreaWeightedMSE needs area weights or grid_shape.")
            area = torch.ones(tuple(grid_shape))
        area = torch.as_tensor(area, dtype=torch.float32)
        self.register_buffer("area", area / area.sum(), persistent=False)
        self.register_buffer(
            "channel_weight",
            None if channel_weight is None else torch.as_tensor(channel_weight, dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "inv_scale", None if scale is None else 1.0 / torch.as_tensor(scale, dtype=torch.float32), persistent=False
        )

    def extra_repr(self) -> str:
        c = None if self.channel_weight is None else self.channel_weight.numel()
        return f"grid={tuple(self.area.shape)}, channels={c}, scaled={self.inv_scale is not None}"

    def per_channel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scaled area-weighted MSE per sample and channel, ``[B, C]`` (no channel weights)."""
        nd = self.area.ndim
        c = pred.shape[-nd - 1]
        for name, buf in (("channel weights", self.channel_weight), ("scales", self.inv_scale)):
            if buf is not None and buf.numel() != c:
                raise GridError(f"loss has {buf.numel()} {name} but the prediction has {c} channels ({tuple(pred.shape)}).")
        mse = weighted_mse(pred, target, self.area)
        if self.inv_scale is not None:
            mse = mse * self.inv_scale**2
        return mse

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``pred``/``target`` ``[B, C, *grid]``."""
        mse = self.per_channel(pred, target)
        if self.channel_weight is None:
            return mse.mean()
        w = self.channel_weight
        return (mse * w).sum(-1).div(w.sum()).mean()


class SpectralAMSE(AreaWeightedMSE):
    """Adjusted MSE on spherical-harmonic coefficients (see the module docstring), per channel.

    Parameters
    ----------
    sht : atmos.grids.sht.SphericalHarmonicTransform
        The grid's transform (its weights are the loss's area weights).
    area, channel_weight, scale :
        As :class:`AreaWeightedMSE` (``area`` is only used for its shape here).
    eps : float
        Added to the powers under the square roots (normalized units squared).
    """

    def __init__(self, sht: nn.Module, area: torch.Tensor, channel_weight=None, scale=None, eps: float = 1e-8) -> None:
        super().__init__(area, channel_weight, scale)
        if tuple(sht.grid_shape) != tuple(area.shape):
            raise GridError(f"SpectralAMSE: transform grid {tuple(sht.grid_shape)} != loss grid {tuple(area.shape)}.")
        self.sht = sht
        self.eps = float(eps)

    def per_channel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scaled AMSE per sample and channel, ``[B, C]``."""
        if pred.shape != target.shape:
            raise GridError(f"SpectralAMSE: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.")
        a, b = self.sht(pred), self.sht(target)
        p, t, x = (self.sht.per_degree(u * v) for u, v in ((a, a), (b, b), (a, b)))
        rp, rt = torch.sqrt(p + self.eps), torch.sqrt(t + self.eps)
        coherence = x / (rp * rt)
        amse = ((rp - rt) ** 2 + 2.0 * torch.maximum(p, t) * (1.0 - coherence)).sum(-1)
        # the error above lmax (what the truncated transform does not see) is kept as plain MSE
        resolved = self.sht.per_degree((a - b) ** 2).sum(-1)
        amse = amse + (weighted_mse(pred, target, self.area) - resolved).clamp(min=0.0)
        if self.inv_scale is not None:
            amse = amse * self.inv_scale**2
        return amse


class AreaWeightedCRPS(AreaWeightedMSE):
    """Area-weighted fair CRPS of an ensemble, per channel (the loss of ``loss.name: crps``).

    For members ``x_1..x_M`` and truth ``y`` at a grid point (Ferro 2014; the fair
    estimator, unbiased for the CRPS of the ensemble's distribution):

        fCRPS = 1/M sum_m |x_m - y|  -  1/(2 M (M - 1)) sum_{m, m'} |x_m - x_m'|

    summed over cells with the area weights and divided by the loss scale ``s_c`` (the
    CRPS has the units of the variable, so the scale enters once, not squared). With
    ``M = 1`` it is the mean absolute error.

    ``pred`` holds the members of each sample next to each other: ``[B * M, C, *grid]``
    (sample-major, as ``repeat_interleave(M, 0)`` makes them); ``target`` ``[B, C, *grid]``.
    """

    def per_channel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scaled area-weighted fair CRPS per sample and channel, ``[B, C]``."""
        B = target.shape[0]
        if pred.shape[0] % B or pred.shape[1:] != target.shape[1:]:
            raise GridError(
                f"AreaWeightedCRPS: expected members [B*M, ...] for targets {tuple(target.shape)}, got {tuple(pred.shape)}."
            )
        M = pred.shape[0] // B
        x = pred.float().reshape(B, M, *pred.shape[1:])
        y = target.float().unsqueeze(1)
        skill = (x - y).abs().mean(1)
        if M > 1:
            spread = (x.unsqueeze(1) - x.unsqueeze(2)).abs().sum((1, 2)) / (2.0 * M * (M - 1))
            crps = skill - spread
        else:
            crps = skill
        nd = self.area.ndim
        out = (crps * self.area.to(crps.dtype)).flatten(-nd).sum(-1)
        if self.inv_scale is not None:
            out = out * self.inv_scale
        return out


def build_loss(
    name: str,
    grid,
    area: torch.Tensor,
    channel_weight: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    lmax: int | None = None,
) -> AreaWeightedMSE:
    """The training loss ``loss.name`` (``mse`` or ``amse``) on ``grid`` in the layout of ``area``.

    Parameters
    ----------
    name : str
        ``mse`` (:class:`AreaWeightedMSE`) or ``amse`` (:class:`SpectralAMSE`).
    grid : LatLonGrid or HealpixGrid
    area : Tensor ``[*grid_shape]``
        Normalized cell weights in the data layout (HEALPix: cells or faces).
    lmax : int, optional
        Highest degree of ``amse`` (default: ``nlat - 1`` on lat-lon, ``2 nside`` on HEALPix).
    """
    if name == "mse":
        return AreaWeightedMSE(area, channel_weight, scale)
    if name == "crps":
        return AreaWeightedCRPS(area, channel_weight, scale)
    if name != "amse":
        raise ConfigError(f"loss.name must be one of ['mse', 'amse', 'crps'], got {name!r}.")
    from atmos.grids.sht import SphericalHarmonicTransform

    lat, lon = (np.asarray(c, dtype=np.float64) for c in grid.centers())
    if lat.shape != tuple(area.shape):  # HEALPix faces
        lat, lon = grid.cells_to_faces(lat), grid.cells_to_faces(lon)
    if lmax is None:
        lmax = 2 * int(grid.nside) if hasattr(grid, "nside") else int(lat.shape[0]) - 1
    sht = SphericalHarmonicTransform(lat, lon, area.cpu().numpy(), lmax)
    return SpectralAMSE(sht, area, channel_weight, scale)
