"""Task heads on top of (or instead of) an emulator backbone; tensor-only.

:class:`DownscalingHead` maps a coarse lat-lon field to a grid ``factor`` times finer
in latitude and longitude, after the downscaling fine-tuning of Prithvi WxC (coarse
patch embedding -> conv blocks -> pixel-shuffle upsampling -> conv) and RainShift::

    fine = head(coarse, statics=None, features=None)

    coarse   [B, C, nlat // factor, nlon // factor]   normalized coarse fields
    statics  [S, nlat, nlon] | [B, S, nlat, nlon]      normalized fine-grid statics
                                                      (default: the ``static_fields`` buffer,
                                                      saved with the weights)
    features [B, F, nlat // factor, nlon // factor]    optional (frozen) backbone features
    fine     [B, C, nlat, nlon]                        normalized fine fields

The coarse grid is the fine grid coarsened by blocks of ``factor x factor`` cells
(:func:`coarse_grid`); it is what :func:`atmos.io.downscale.coarsen_conservative`
produces. The head predicts a correction on top of an interpolation of the coarse
input (``base``) and, with ``conserve=True``, its output coarsens (conservatively)
back to the input exactly: ``R(fine) == coarse`` (up to rounding), where ``R`` is the
area-weighted block mean.

Padding is spherical: periodic in longitude, and across the poles a row continues as
the same latitude row shifted by 180 degrees of longitude (needs an even ``nlon``).

Registered in the model registry as ``"downscale"``::

    from atmos.models import build
    head = build("downscale", channels=["2m_temperature", "geopotential_500"], nlat=32, nlon=64, factor=4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from atmos.errors import ConfigError, GridError
from atmos.grids.latlon import LatLonGrid, coarse_grid
from atmos.grids.regrid import LatLonToLatLon
from atmos.models.fourier import FourierFeatures, check_fourier_config, unit_vectors
from atmos.models.layers import SphereConv2d, SphereResBlock, sphere_pad
from atmos.models.registry import register_model
from atmos.models.schema import ChannelSchema

__all__ = ["DownscalingHead", "DownscalingHeadConfig", "coarse_grid", "sphere_pad"]


def _prime_factors(n: int) -> list[int]:
    out, d = [], 2
    while n > 1:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    return out


@dataclass
class DownscalingHeadConfig:
    """Configuration of :class:`DownscalingHead` (JSON-safe via ``dataclasses.asdict``).

    Attributes
    ----------
    channels : list of str
        Names of the downscaled channels (``variable`` or ``variable_level``), in and out.
    statics : list of str
        Names of the fine-grid static input channels (e.g. ``geopotential_at_surface``).
    nlat, nlon, poles : int, int, bool
        Fine grid: ``LatLonGrid.equiangular(nlat, nlon, poles=poles)``.
    factor : int
        Refinement factor in each direction (divides ``nlat`` and ``nlon``).
    hidden : int
        Width of the coarse-resolution blocks.
    fine_hidden : int
        Width of the fine-resolution blocks.
    coarse_blocks, fine_blocks : int
        Residual blocks before and after the upsampling.
    upsample : {"pixel_shuffle", "interp"}
        Upsampling block: conv + pixel shuffle, or nearest interpolation + conv; one
        block per prime factor of ``factor``.
    base : {"bilinear", "bicubic", "none"}
        Interpolation of the coarse input that the network corrects.
    conserve : bool
        Project the output so that its area-weighted block means equal the input.
    backbone_channels : int
        Channels of optional backbone features on the coarse grid (0: none).
    position_features : bool
        Add sin/cos of latitude and longitude as fine-grid inputs.
    fourier_features : dict or None
        ``{"n": N, "scale": S}``: add ``2 N`` random Fourier features of the fine-grid
        position (:class:`atmos.models.fourier.FourierFeatures`, against spectral bias)
        as fine-grid inputs; None adds nothing.
    spectral_norm : bool
        Registry flag (spectral normalization of the weights at build time).
    """

    channels: list[str] = field(default_factory=lambda: ["2m_temperature", "geopotential_500"])
    statics: list[str] = field(default_factory=list)
    nlat: int = 32
    nlon: int = 64
    poles: bool = False
    factor: int = 4
    hidden: int = 64
    fine_hidden: int = 32
    coarse_blocks: int = 2
    fine_blocks: int = 2
    upsample: str = "pixel_shuffle"
    base: str = "bilinear"
    conserve: bool = True
    backbone_channels: int = 0
    position_features: bool = True
    fourier_features: dict | None = None
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        self.fourier_features = check_fourier_config(self.fourier_features, "downscale fourier_features")


class DownscalingHead(nn.Module):
    """Coarse field -> fine field (see the module docstring for shapes).

    Parameters
    ----------
    config : DownscalingHeadConfig

    Examples
    --------
    >>> head = DownscalingHead(DownscalingHeadConfig(nlat=32, nlon=64, factor=4))
    >>> head(torch.randn(3, 2, 8, 16)).shape
    torch.Size([3, 2, 32, 64])
    """

    def __init__(self, config: DownscalingHeadConfig) -> None:
        super().__init__()
        c = config
        if not c.channels:
            raise ConfigError("DownscalingHead needs at least one channel in `channels`.")
        if c.upsample not in ("pixel_shuffle", "interp"):
            raise ConfigError(f"upsample must be 'pixel_shuffle' or 'interp', got {c.upsample!r}.")
        if c.base not in ("bilinear", "bicubic", "none"):
            raise ConfigError(f"base must be 'bilinear', 'bicubic' or 'none', got {c.base!r}.")
        if min(c.hidden, c.fine_hidden) < 1 or min(c.coarse_blocks, c.fine_blocks, c.backbone_channels) < 0:
            raise ConfigError(
                f"hidden/fine_hidden must be >= 1 and block/feature counts >= 0, got hidden={c.hidden}, "
                f"fine_hidden={c.fine_hidden}, coarse_blocks={c.coarse_blocks}, fine_blocks={c.fine_blocks}, "
                f"backbone_channels={c.backbone_channels}."
            )
        self.config = c
        self.fine_grid = LatLonGrid.equiangular(c.nlat, c.nlon, poles=c.poles)
        try:
            self.coarse_grid = coarse_grid(self.fine_grid, c.factor)
        except GridError as err:
            raise ConfigError(str(err)) from None
        self.schema = ChannelSchema(
            inputs=list(c.channels),
            outputs=list(c.channels),
            statics=list(c.statics),
            grid={"type": "latlon", "shape": [c.nlat, c.nlon]},
        )
        nc, ns = len(c.channels), len(c.statics)

        self.embed = SphereConv2d(nc + c.backbone_channels, c.hidden)
        self.coarse = nn.Sequential(*[SphereResBlock(c.hidden) for _ in range(c.coarse_blocks)])
        ups: list[nn.Module] = []
        factors = _prime_factors(c.factor)
        ch = c.hidden
        for i, r in enumerate(factors):
            out = c.fine_hidden if i == len(factors) - 1 else ch
            if c.upsample == "pixel_shuffle":
                ups += [SphereConv2d(ch, out * r * r), nn.PixelShuffle(r), nn.GELU()]
            else:
                ups += [nn.Upsample(scale_factor=r, mode="nearest"), SphereConv2d(ch, out), nn.GELU()]
            ch = out
        self.up = nn.Sequential(*ups)
        n_pos = 4 if c.position_features else 0
        ff = c.fourier_features
        self.fourier = (
            None
            if ff is None
            else FourierFeatures(
                unit_vectors(self.fine_grid.lat[:, None], self.fine_grid.lon[None, :]), ff["n"], ff["scale"], ff["seed"]
            )
        )
        n_pos += 0 if self.fourier is None else self.fourier.channels
        extra = ns + n_pos + (nc if c.base != "none" else 0)
        self.merge = SphereConv2d(ch + extra, c.fine_hidden)
        self.fine = nn.Sequential(*[SphereResBlock(c.fine_hidden) for _ in range(c.fine_blocks)])
        self.out = SphereConv2d(c.fine_hidden, nc)
        nn.init.zeros_(self.out.weight)  # starts as the base interpolation
        nn.init.zeros_(self.out.bias)

        lat = torch.deg2rad(torch.as_tensor(self.fine_grid.lat, dtype=torch.float32))
        lon = torch.deg2rad(torch.as_tensor(self.fine_grid.lon, dtype=torch.float32))
        la, lo = torch.meshgrid(lat, lon, indexing="ij")
        pos = torch.stack([torch.sin(la), torch.cos(la), torch.sin(lo), torch.cos(lo)])
        self.register_buffer("position", pos, persistent=False)
        self.coarsen = LatLonToLatLon(self.fine_grid, self.coarse_grid, method="conservative")
        # the normalized fine-grid statics seen in training (saved with the weights), used
        # when forward() gets no statics
        self.register_buffer("static_fields", torch.zeros(ns, c.nlat, c.nlon) if ns else None)

    @property
    def coarse_shape(self) -> tuple[int, int]:
        return self.coarse_grid.shape

    @property
    def fine_shape(self) -> tuple[int, int]:
        return self.fine_grid.shape

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"channels={len(c.channels)}, statics={len(c.statics)}, coarse={self.coarse_shape} -> "
            f"fine={self.fine_shape} (x{c.factor}), upsample={c.upsample!r}, base={c.base!r}, conserve={c.conserve}"
        )

    def interpolate(self, coarse: torch.Tensor) -> torch.Tensor:
        """The ``base`` interpolation ``[B, C, *coarse]`` -> ``[B, C, *fine]`` (zeros for ``"none"``).

        ``torch.nn.functional.interpolate`` on a spherically padded input, so the
        result is periodic in longitude and continues across the poles.
        """
        f = self.config.factor
        if self.config.base == "none":
            return coarse.new_zeros(*coarse.shape[:-2], *self.fine_shape)
        p = 1 if self.config.base == "bilinear" else 2
        y = F.interpolate(sphere_pad(coarse, p), scale_factor=f, mode=self.config.base, align_corners=False)
        return y[..., p * f : -p * f, p * f : -p * f]

    def _check(
        self, coarse: torch.Tensor, statics: torch.Tensor | None, features: torch.Tensor | None
    ) -> None:
        c = self.config
        want = (len(c.channels), *self.coarse_shape)
        if coarse.ndim != 4 or tuple(coarse.shape[1:]) != want:
            raise GridError(
                f"DownscalingHead expects coarse input [B, {want[0]}, {want[1]}, {want[2]}] "
                f"(channels {c.channels}), got {tuple(coarse.shape)}."
            )
        if c.statics and statics is not None:
            swant = (len(c.statics), *self.fine_shape)
            if tuple(statics.shape[-3:]) != swant or statics.ndim not in (3, 4):
                got = None if statics is None else tuple(statics.shape)
                raise GridError(f"DownscalingHead expects statics [..., {swant}] ({c.statics}), got {got}.")
        if c.backbone_channels:
            fwant = (coarse.shape[0], c.backbone_channels, *self.coarse_shape)
            if features is None or tuple(features.shape) != fwant:
                got = None if features is None else tuple(features.shape)
                raise GridError(f"DownscalingHead expects backbone features {fwant}, got {got}.")

    def forward(
        self,
        coarse: torch.Tensor,
        statics: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Downscale ``coarse`` ``[B, C, nlat/f, nlon/f]`` to ``[B, C, nlat, nlon]``."""
        self._check(coarse, statics, features)
        c = self.config
        b = coarse.shape[0]
        h = (
            coarse
            if features is None or not c.backbone_channels
            else torch.cat([coarse, features.to(coarse)], 1)
        )
        h = self.up(self.coarse(self.embed(h)))
        base = self.interpolate(coarse)
        parts = [h]
        if c.statics:
            s = (self.static_fields if statics is None else statics).to(coarse)
            s = s.reshape(-1, *s.shape[-3:])
            parts.append(s.expand(b, *s.shape[1:]) if s.shape[0] == 1 else s)
        if c.position_features:
            parts.append(self.position.to(coarse).expand(b, *self.position.shape))
        if self.fourier is not None:
            ff = self.fourier().to(coarse)
            parts.append(ff.expand(b, *ff.shape))
        if c.base != "none":
            parts.append(base)
        h = self.fine(F.gelu(self.merge(torch.cat(parts, 1))))
        y = base + self.out(F.gelu(h))
        if c.conserve:
            d = coarse - self.coarsen(y)
            y = y + d.repeat_interleave(c.factor, -2).repeat_interleave(c.factor, -1)
        return y


register_model("downscale", DownscalingHead, DownscalingHeadConfig)
