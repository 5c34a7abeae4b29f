"""Hybrid ViT/U-Net emulator on lat-lon grids (after AI-GAMFS).

A convolutional U-Net encoder/decoder with spherical ("earth") padding wraps a vision
transformer that runs at the coarsest level, where global attention is cheap. One step::

    [B, history, C_in, nlat, nlon] + forcings + statics
      -> fold time into channels                               [B, C_tot, nlat, nlon]
      -> stem conv + residual conv block                        [B, c0, nlat, nlon]      (skip 0)
      -> per level l >= 1: 2x2 average pool, conv, block        [B, c_l, nlat/2^l, ...]  (skip l)
      -> 2x2 average pool, 1x1 conv to D, + position encoding   tokens on nlat/2^L x nlon/2^L
      -> depth x transformer block (alternating window-local and cross-window global
         attention, the ViT's WindowBlock)
      -> 1x1 conv back to c_{L-1}
      -> per level from coarse to fine: 2x2 transposed conv up, concat skip, conv, block
      -> latent: the finest decoder features                    [B, c0, nlat, nlon]
      -> 1x1 conv output                                        [B, C_out, nlat, nlon]

with ``L = len(channels)``. Every 3x3 convolution pads spherically
(:func:`atmos.models.layers.sphere_pad`: periodic in longitude, across each pole the
same latitude on the opposite meridian), so without the position encoding
(``pos_encoding="none"``) the model commutes with shifts in longitude by whole
windows of the coarsest level (``2^L * window_size[1]`` cells).

The latent (``{"kind": "pixels", "dim": c0, "grid": [nlat, nlon]}``) feeds the
lightweight decoders as the U-Net-GRU's does; heads, spectral normalization
(``spectral_norm=True``), activation checkpointing of the transformer blocks and
conv stages, and the trainer/rollout contract are those of :mod:`atmos.models.base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from atmos.errors import ConfigError
from atmos.models.base import LatentForward
from atmos.models.layers import SphereConv2d, SphereResBlock, assemble_inputs
from atmos.models.schema import ChannelConfig, ChannelSchema, check_int
from atmos.models.vit import (
    VIT_DEFAULT_INPUTS,
    WindowBlock,
    _sphere_coords,
    check_window_transformer,
    from_windows,
    latlon_grid_params,
    octave_features,
    to_windows,
)

__all__ = ["HybridConfig", "HybridViTUNet"]


@dataclass
class HybridConfig(ChannelConfig):
    """Configuration of :class:`HybridViTUNet` (JSON-safe through ``dataclasses.asdict``).

    Parameters
    ----------
    inputs, outputs, forcings, statics, history
        Channel schema (see :class:`atmos.models.schema.ChannelSchema`).
    nlat, nlon : int
        Grid size (latitude ascending, longitude from 0 eastwards); both must divide by
        ``2 ** len(channels)`` and the coarsest grid by ``window_size``.
    poles : bool
        Whether the first/last latitude rows are the poles (position encoding only).
    channels : list of int
        U-Net widths, fine to coarse (one entry per level; each level below the first
        halves the resolution).
    embed_dim, depth, num_heads, mlp_ratio
        Transformer at the coarsest level: width, blocks (alternating local/global,
        starting with local), heads, MLP expansion.
    window_size : [int, int]
        Local-attention window in coarsest-level cells (lat, lon).
    pos_encoding : {"fourier", "learned", "none"}
        Position encoding of the coarsest cells: octave Fourier features of their unit
        vectors (as the ViT), a learned table, or none (longitude-shift equivariant).
    fourier_bands : int
        Octaves of the Fourier position encoding.
    dropout : float
        Dropout in attention and MLP.
    spectral_norm : bool
        Wrap every Linear/Conv with spectral normalization (registry flag).
    """

    inputs: list[str] = field(default_factory=lambda: list(VIT_DEFAULT_INPUTS))
    nlat: int = 32
    nlon: int = 64
    poles: bool = False
    channels: list[int] = field(default_factory=lambda: [32, 48])
    embed_dim: int = 96
    depth: int = 2
    num_heads: int = 4
    window_size: list[int] = field(default_factory=lambda: [4, 4])
    mlp_ratio: float = 4.0
    pos_encoding: str = "fourier"
    fourier_bands: int = 4
    dropout: float = 0.0
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        check_window_transformer(self, ("fourier", "learned", "none"), "coarsest cells")
        if isinstance(self.channels, (str, int)) or not list(self.channels):
            raise ConfigError(
                f"config 'channels' must be a non-empty list of U-Net widths (fine to coarse), e.g. [32, 48]; "
                f"got {self.channels!r}."
            )
        self.channels = [check_int("channels", c) for c in self.channels]
        f = 2 ** len(self.channels)
        wh, ww = self.window_size
        if self.nlat % (f * wh) or self.nlon % (f * ww):
            raise ConfigError(
                f"the {self.nlat}x{self.nlon} grid does not fit channels={self.channels} (the coarsest level is "
                f"1/{f} of the grid) with window_size={self.window_size}: nlat must divide by {f * wh} and nlon "
                f"by {f * ww}. Use fewer levels or a smaller window."
            )

    @classmethod
    def grid_params(cls, grid: Mapping[str, Any]) -> dict[str, Any]:
        """``nlat``, ``nlon`` and ``poles`` of a lat-lon grid (``{}`` for any other grid)."""
        return latlon_grid_params(grid)

    def grid_dict(self) -> dict[str, Any]:
        return {"type": "latlon", "shape": [self.nlat, self.nlon], "poles": bool(self.poles)}


class _Down(nn.Module):
    """2x2 average pool, 3x3 conv to the new width, residual block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = SphereConv2d(cin, cout)
        self.block = SphereResBlock(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(F.avg_pool2d(x, 2)))


class _Up(nn.Module):
    """2x2 transposed conv up, concatenate the skip, 3x3 conv, residual block."""

    def __init__(self, cin: int, cskip: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cskip, 2, stride=2)
        self.conv = SphereConv2d(2 * cskip, cskip)
        self.block = SphereResBlock(cskip)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(torch.cat([F.gelu(self.up(x)), skip], 1)))


class HybridViTUNet(LatentForward):
    """Lat-lon U-Net with a vision transformer at its coarsest level; predicts the one-step residual.

    Parameters
    ----------
    config : HybridConfig, optional
        Defaults to ``HybridConfig()`` (64x32 grid, 0.45 M parameters with the sample's 14
        channels, as many as the sample ViT's 0.46 M).

    Forward
    -------
    inputs : [B, history, len(schema.inputs), nlat, nlon]
    forcings : [B, history + 1, len(schema.forcings), nlat, nlon] or None
    statics : [C_s, nlat, nlon], [B, C_s, nlat, nlon] or [B, 1, C_s, nlat, nlon], or None
    state : ignored (no recurrent state)

    Returns ``(delta, None)`` with ``delta`` of shape ``[B, len(schema.outputs), nlat, nlon]``.
    """

    def __init__(self, config: HybridConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else HybridConfig()
        self.config = cfg
        self.schema: ChannelSchema = cfg.make_schema(cfg.grid_dict())
        self.grid = (cfg.nlat, cfg.nlon)
        ch = cfg.channels
        levels = len(ch)
        self.coarse = (cfg.nlat >> levels, cfg.nlon >> levels)
        d = cfg.embed_dim

        self.stem = SphereConv2d(self.schema.in_channels, ch[0])
        self.stem_block = SphereResBlock(ch[0])
        self.down = nn.ModuleList(_Down(a, b) for a, b in zip(ch[:-1], ch[1:], strict=True))
        self.to_tokens = nn.Conv2d(ch[-1], d, 1)
        self.blocks = nn.ModuleList(
            WindowBlock(d, cfg.num_heads, cfg.mlp_ratio, "local" if i % 2 == 0 else "global", cfg.dropout)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d)
        self.from_tokens = nn.Conv2d(d, ch[-1], 1)
        # the coarsest up step takes the transformer's output to the last level's grid
        self.up = nn.ModuleList(_Up(ch[i + 1] if i + 1 < levels else ch[-1], ch[i]) for i in reversed(range(levels)))
        self.head = nn.Conv2d(ch[0], self.schema.n_prognostic, 1)

        self.pos_proj: nn.Linear | None = None
        self.pos_table: nn.Parameter | None = None
        self.register_buffer("pos_features", None, persistent=False)
        if cfg.pos_encoding == "fourier":
            coords = torch.as_tensor(_sphere_coords(cfg.nlat, cfg.nlon, cfg.poles), dtype=torch.float32)
            coords = F.avg_pool2d(coords[None], 2**levels)  # [1, 3, hc, wc] cell-centre means
            feats = octave_features(coords, cfg.fourier_bands)
            self.pos_features = to_windows(feats, cfg.window_size)
            self.pos_proj = nn.Linear(feats.shape[1], d)
        elif cfg.pos_encoding == "learned":
            self.pos_table = nn.Parameter(torch.zeros(1, *self._window_shape(), d))
        self.apply(self._init)
        if self.pos_table is not None:
            nn.init.trunc_normal_(self.pos_table, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _window_shape(self) -> tuple[int, int]:
        wh, ww = self.config.window_size
        return (self.coarse[0] // wh) * (self.coarse[1] // ww), wh * ww

    def position_encoding(self) -> torch.Tensor | None:
        """Added to the window-major tokens, ``[1, n_windows, window_len, D]`` (None: no encoding)."""
        if self.pos_table is not None:
            return self.pos_table
        if self.pos_proj is not None:
            return self.pos_proj(self.pos_features)
        return None

    # -- latent API ----------------------------------------------------------------------
    def latent_spec(self) -> dict[str, Any]:
        """``{"kind": "pixels", "dim": channels[0], "grid": [nlat, nlon]}`` (the finest decoder features)."""
        return {"kind": "pixels", "dim": int(self.config.channels[0]), "grid": [int(g) for g in self.grid]}

    def forward_latent(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: Any = None,
    ) -> tuple[torch.Tensor, None]:
        """The finest decoder features ``[B, channels[0], nlat, nlon]`` and no state."""
        x = assemble_inputs(self.schema, self.grid, inputs, forcings, statics)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem_block(self.stem(x))
        skips = [x]
        for down in self.down:
            x = self.run_block(down, x)
            skips.append(x)
        t = to_windows(self.to_tokens(F.avg_pool2d(x, 2)), self.config.window_size)
        pos = self.position_encoding()
        if pos is not None:
            t = t + pos
        for blk in self.blocks:
            t = self.run_block(blk, t)
        x = self.from_tokens(from_windows(self.norm(t), self.config.window_size, self.coarse).permute(0, 3, 1, 2))
        for up, skip in zip(self.up, reversed(skips), strict=True):
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(up, x, skip, use_reentrant=False)
            else:
                x = up(x, skip)
        return x, None

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Output layer: ``[B, channels[0], nlat, nlon]`` -> residual ``[B, C_out, nlat, nlon]``."""
        return self.head(F.gelu(latent))

    @property
    def recurrent(self) -> bool:
        """False: the hybrid carries no state from step to step."""
        return False

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid}, coarsest={self.coarse}, channels={self.config.channels}, "
            f"in_channels={self.schema.in_channels}, out_channels={self.schema.n_prognostic}"
        )
