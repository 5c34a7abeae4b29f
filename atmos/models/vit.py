"""Vision transformer emulator on lat-lon grids (in the spirit of Prithvi WxC and WXFormer).

Pipeline for one step::

    [B, history, C_in, nlat, nlon] + forcings + statics
      -> fold time into channels              [B, C_tot, nlat, nlon]
      -> earth padding (circular in longitude, across each pole: flip + roll 180 deg)
      -> patch embedding (Conv2d, kernel = stride = patch)   [B, Hp, Wp, D]
      -> + position encoding from the patches' lat/lon (Fourier features or learned)
      -> depth x transformer block, alternating local attention (within windows of
         window_size patches) and global attention (across windows, between the
         tokens at the same position of every window, as Prithvi WxC does)
      -> LayerNorm + Linear patch decoder -> unpatchify -> crop the padding
      -> residual x[t+1] - x[t] of the prognostic channels   [B, C_out, nlat, nlon]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atmos.errors import ConfigError
from atmos.models.base import LatentForward
from atmos.models.layers import assemble_inputs, earth_pad
from atmos.models.schema import ChannelConfig, ChannelSchema, check_int

__all__ = ["ViT", "ViTConfig", "unpatchify"]

#: Default channels of the lat-lon ViT (WeatherBench2 64x32 names, ``{name}_{level}``).
VIT_DEFAULT_INPUTS = [
    "geopotential_500",
    "temperature_850",
    "2m_temperature",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "mean_sea_level_pressure",
]


def check_window_transformer(cfg: Any, encodings: tuple[str, ...], window_unit: str) -> None:
    """Checks shared by the lat-lon window-transformer configs (:class:`ViTConfig`, the hybrid's):
    sizes, ``window_size`` (normalized to ``[lat, lon]``), heads, position encoding, even ``nlon``,
    dropout and MLP ratio; raises :class:`ConfigError` with the fix."""
    for name in ("nlat", "nlon", "embed_dim", "depth", "num_heads", "fourier_bands", "history"):
        check_int(name, getattr(cfg, name))
    ws = list(cfg.window_size) if isinstance(cfg.window_size, (list, tuple)) else [cfg.window_size] * 2
    if len(ws) != 2:
        raise ConfigError(f"config 'window_size' must be [lat, lon] in {window_unit}, got {cfg.window_size!r}.")
    cfg.window_size = [check_int("window_size", w) for w in ws]
    if cfg.embed_dim % cfg.num_heads:
        raise ConfigError(
            f"embed_dim={cfg.embed_dim} must be divisible by num_heads={cfg.num_heads}; "
            f"e.g. num_heads={math.gcd(cfg.embed_dim, 8)}."
        )
    if cfg.pos_encoding not in encodings:
        raise ConfigError(
            f"config 'pos_encoding' must be one of {list(encodings)}, got {cfg.pos_encoding!r}."
        )
    if cfg.nlon % 2:
        raise ConfigError(f"nlon={cfg.nlon} must be even (pole padding rolls longitude by 180 degrees).")
    if not 0.0 <= float(cfg.dropout) < 1.0:
        raise ConfigError(f"config 'dropout' must be in [0, 1), got {cfg.dropout!r}.")
    if float(cfg.mlp_ratio) <= 0:
        raise ConfigError(f"config 'mlp_ratio' must be positive, got {cfg.mlp_ratio!r}.")


@dataclass
class ViTConfig(ChannelConfig):
    """Configuration of :class:`ViT` (JSON-safe through ``dataclasses.asdict``).

    Parameters
    ----------
    inputs, outputs, forcings, statics, history
        Channel schema (see :class:`atmos.models.schema.ChannelSchema`).
    nlat, nlon : int
        Grid size; latitude ascending, longitude from 0 eastwards.
    poles : bool
        Whether the first/last latitude rows are the poles (only used for the
        position encoding); ``False`` for the WeatherBench2 64x32 grid.
    patch_size : int
        Patch edge in grid cells.
    embed_dim, depth, num_heads, mlp_ratio : transformer width, number of blocks
        (alternating local/global, starting with local), heads, MLP expansion.
    window_size : [int, int]
        Local-attention window in patches (lat, lon).
    pos_encoding : {"fourier", "learned"}
        Fourier features of the patch centres' unit vectors on the sphere, or a
        learned table.
    fourier_bands : int
        Number of octaves of the Fourier features.
    min_pad : int
        Minimum earth padding in grid cells on each side; more is added so that the
        padded grid divides by ``patch_size * window_size``.
    dropout : float
        Dropout in attention and MLP.
    spectral_norm : bool
        Wrap every Linear/Conv (patch embedding included) with spectral normalization.
    """

    inputs: list[str] = field(default_factory=lambda: list(VIT_DEFAULT_INPUTS))
    nlat: int = 32
    nlon: int = 64
    poles: bool = False
    patch_size: int = 2
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    window_size: list[int] = field(default_factory=lambda: [4, 4])
    mlp_ratio: float = 4.0
    pos_encoding: str = "fourier"
    fourier_bands: int = 4
    min_pad: int = 1
    dropout: float = 0.0
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        check_int("patch_size", self.patch_size)
        check_int("min_pad", self.min_pad, minimum=0)
        check_window_transformer(self, ("fourier", "learned"), "patches")

    @classmethod
    def grid_params(cls, grid: Mapping[str, Any]) -> dict[str, Any]:
        """``nlat``, ``nlon`` and ``poles`` of a lat-lon grid (``{}`` for any other grid)."""
        return latlon_grid_params(grid)

    # -- derived geometry ------------------------------------------------------
    def padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Earth padding ``((south, north), (west, east))`` in grid cells."""
        out = []
        for size, win in ((self.nlat, self.window_size[0]), (self.nlon, self.window_size[1])):
            unit = self.patch_size * win
            total = 2 * self.min_pad
            total += (-(size + total)) % unit
            lo, hi = total // 2, total - total // 2
            if hi > size:
                raise ConfigError(
                    f"the grid ({self.nlat}x{self.nlon}) is too small for patch_size={self.patch_size} and "
                    f"window_size={self.window_size}: it would need {hi} rows/columns of padding. "
                    "Use a smaller patch or window."
                )
            out.append((lo, hi))
        return out[0], out[1]

    def grid_dict(self) -> dict[str, Any]:
        return {"type": "latlon", "shape": [self.nlat, self.nlon], "poles": bool(self.poles)}


def unpatchify(
    x: torch.Tensor,
    patch_size: int,
    pad_lat: tuple[int, int] | list[int],
    pad_lon: tuple[int, int] | list[int],
    grid: tuple[int, int] | list[int],
) -> torch.Tensor:
    """Per-token patch values ``[B, Hp, Wp, C*p*p]`` -> fields ``[B, C, nlat, nlon]``.

    The token grid covers the earth-padded grid; the padding (``pad_lat`` =
    ``(south, north)``, ``pad_lon`` = ``(west, east)`` cells) is cropped.
    """
    b, hp, wp, cpp = x.shape
    p = int(patch_size)
    c = cpp // (p * p)
    x = x.view(b, hp, wp, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hp * p, wp * p)
    s, w = int(pad_lat[0]), int(pad_lon[0])
    return x[:, :, s : s + int(grid[0]), w : w + int(grid[1])]


# -----------------------------------------------------------------------------
# blocks
# -----------------------------------------------------------------------------
class WindowAttention(nn.Module):
    """Multi-head self-attention on window-major tokens ``[B, n_windows, window_len, D]``.

    ``mode="local"`` attends within each window (sequences of ``window_len``
    tokens); ``mode="global"`` attends across windows, between the tokens at the
    same position of every window (sequences of ``n_windows`` tokens). Both only
    permute the fused q/k/v projection, never the token tensor itself.
    """

    def __init__(self, dim: int, num_heads: int, mode: str, dropout: float = 0.0) -> None:
        super().__init__()
        if mode not in ("local", "global"):
            raise ConfigError(f"attention mode must be 'local' or 'global', got {mode!r}.")
        self.num_heads = num_heads
        self.mode = mode
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nwin, wlen, dim = x.shape
        h = self.num_heads
        qkv = self.qkv(x).view(b, nwin, wlen, 3, h, dim // h)
        if self.mode == "local":
            q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # [B, nwin, H, wlen, hd]
        else:
            q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).unbind(0)  # [B, wlen, H, nwin, hd]
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if self.mode == "local":
            out = out.permute(0, 1, 3, 2, 4)
        else:
            out = out.permute(0, 3, 1, 2, 4)
        return self.proj(out.reshape(b, nwin, wlen, dim))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, num_heads={self.num_heads}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class WindowBlock(nn.Module):
    """Pre-norm transformer block on window-major tokens ``[B, n_windows, window_len, D]``.

    Local attention mixes the tokens of one window; global attention mixes the
    tokens at the same position in every window (Prithvi WxC's alternation).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, mode: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, mode, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def to_windows(x: torch.Tensor, window: tuple[int, int] | list[int]) -> torch.Tensor:
    """``[B, D, H, W]`` -> window-major tokens ``[B, n_windows, window_len, D]`` (windows ``wh x ww``)."""
    b, d, h, w = x.shape
    wh, ww = window
    x = x.view(b, d, h // wh, wh, w // ww, ww).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, d)


def from_windows(x: torch.Tensor, window: tuple[int, int] | list[int], shape: tuple[int, int]) -> torch.Tensor:
    """Window-major tokens ``[B, n_windows, window_len, D]`` -> ``[B, H, W, D]`` (inverse of :func:`to_windows`)."""
    b, _, _, d = x.shape
    wh, ww = window
    h, w = shape
    x = x.view(b, h // wh, w // ww, wh, ww, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, d)


def octave_features(coords: torch.Tensor, bands: int) -> torch.Tensor:
    """Position features ``[B, 3 + 6 * bands, H, W]`` of unit vectors ``[B, 3, H, W]``: the vector and
    ``sin``/``cos`` of ``pi * 2**j`` times it, ``j < bands`` (the ViT's Fourier position encoding)."""
    freqs = math.pi * 2.0 ** torch.arange(bands, dtype=torch.float32)
    ang = coords[:, None] * freqs[None, :, None, None, None]  # [B, bands, 3, H, W]
    return torch.cat([coords, torch.sin(ang).flatten(1, 2), torch.cos(ang).flatten(1, 2)], dim=1)


def latlon_grid_params(grid: Mapping[str, Any]) -> dict[str, Any]:
    """``nlat``, ``nlon`` and ``poles`` of a lat-lon grid's JSON (``{}`` for any other grid)."""
    if grid.get("type") != "latlon":
        return {}
    return {
        "nlat": len(grid["lat"]),
        "nlon": len(grid["lon"]),
        "poles": grid.get("kind") == "equiangular_with_poles",
    }


def _sphere_coords(nlat: int, nlon: int, poles: bool) -> np.ndarray:
    """Unit vectors of the cell centres, shape [3, nlat, nlon]."""
    if poles:
        lat = np.linspace(-90.0, 90.0, nlat)
    else:
        lat = -90.0 + (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = np.arange(nlon) * 360.0 / nlon
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


# -----------------------------------------------------------------------------
# model
# -----------------------------------------------------------------------------
class ViT(LatentForward):
    """Lat-lon vision transformer predicting the one-step residual.

    Parameters
    ----------
    config : ViTConfig, optional
        Defaults to ``ViTConfig()`` (64x32 grid, 0.81 M parameters).

    Attributes
    ----------
    schema : ChannelSchema
    config : ViTConfig

    Forward
    -------
    inputs : [B, history, len(schema.inputs), nlat, nlon]
    forcings : [B, history + 1, len(schema.forcings), nlat, nlon] or None
    statics : [C_s, nlat, nlon], [B, C_s, nlat, nlon] or [B, 1, C_s, nlat, nlon], or None
    state : ignored (the ViT has no recurrent state)

    Returns ``(delta, None)`` with ``delta`` of shape ``[B, len(schema.outputs), nlat, nlon]``.
    """

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else ViTConfig()
        self.config = cfg
        self.schema: ChannelSchema = cfg.make_schema(cfg.grid_dict())
        self.grid = (cfg.nlat, cfg.nlon)
        self.pad_lat, self.pad_lon = cfg.padding()
        p = cfg.patch_size
        self.padded = (cfg.nlat + sum(self.pad_lat), cfg.nlon + sum(self.pad_lon))
        self.tokens = (self.padded[0] // p, self.padded[1] // p)
        d = cfg.embed_dim
        self.patch_embed = nn.Conv2d(self.schema.in_channels, d, kernel_size=p, stride=p)

        coords = torch.as_tensor(_sphere_coords(cfg.nlat, cfg.nlon, cfg.poles), dtype=torch.float32)
        coords = F.avg_pool2d(earth_pad(coords, self.pad_lat, self.pad_lon)[None], p)  # [1, 3, Hp, Wp]
        if cfg.pos_encoding == "fourier":
            feats = octave_features(coords, cfg.fourier_bands)
            self.register_buffer("pos_features", self._to_windows(feats), persistent=False)
            self.pos_proj = nn.Linear(feats.shape[1], d)
            self.pos_table = None
        else:
            self.pos_features = None
            self.pos_proj = None
            self.pos_table = nn.Parameter(torch.zeros(1, *self._window_shape(), d))
            nn.init.trunc_normal_(self.pos_table, std=0.02)

        self.blocks = nn.ModuleList(
            WindowBlock(d, cfg.num_heads, cfg.mlp_ratio, "local" if i % 2 == 0 else "global", cfg.dropout)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.schema.n_prognostic * p * p)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _window_shape(self) -> tuple[int, int]:
        wh, ww = self.config.window_size
        return (self.tokens[0] // wh) * (self.tokens[1] // ww), wh * ww

    def _to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D, Hp, Wp]`` -> window-major tokens ``[B, n_windows, window_len, D]``."""
        return to_windows(x, self.config.window_size)

    def _from_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Window-major tokens ``[B, n_windows, window_len, D]`` -> ``[B, Hp, Wp, D]``."""
        return from_windows(x, self.config.window_size, self.tokens)

    def position_encoding(self) -> torch.Tensor:
        """Position encoding added to the window-major tokens, ``[1, n_windows, window_len, D]``."""
        if self.pos_table is not None:
            return self.pos_table
        return self.pos_proj(self.pos_features)

    def latent_spec(self) -> dict[str, Any]:
        """Geometry of :meth:`forward_latent`'s output, for building a decoder on it.

        ``{"kind": "tokens", "dim": D, "tokens": [Hp, Wp], "patch_size": p,
        "pad_lat": [south, north], "pad_lon": [west, east], "grid": [nlat, nlon]}``.
        """
        return {
            "kind": "tokens",
            "dim": int(self.config.embed_dim),
            "tokens": [int(t) for t in self.tokens],
            "patch_size": int(self.config.patch_size),
            "pad_lat": [int(v) for v in self.pad_lat],
            "pad_lon": [int(v) for v in self.pad_lon],
            "grid": [int(g) for g in self.grid],
        }

    def forward_latent(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: Any = None,
    ) -> tuple[torch.Tensor, None]:
        """Token embeddings after the last transformer block, before the patch decoder.

        Returns ``(latent, None)`` with ``latent`` of shape ``[B, Hp, Wp, D]`` (the
        padded token grid, see :meth:`latent_spec`); ``forward`` is
        ``decode_latent(forward_latent(...))``.
        """
        x = assemble_inputs(self.schema, self.grid, inputs, forcings, statics)
        x = earth_pad(x, self.pad_lat, self.pad_lon)
        x = self._to_windows(self.patch_embed(x))  # [B, n_windows, window_len, D]
        x = x + self.position_encoding()
        for blk in self.blocks:
            x = self.run_block(blk, x)
        return self._from_windows(x), None

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Patch decoder: ``[B, Hp, Wp, D]`` -> residual ``[B, C_out, nlat, nlon]``."""
        x = self.head(self.norm(latent))  # [B, Hp, Wp, C*p*p]
        return unpatchify(x, self.config.patch_size, self.pad_lat, self.pad_lon, self.grid)

    @property
    def recurrent(self) -> bool:
        """False: the ViT carries no state from step to step."""
        return False

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid}, padded={self.padded}, tokens={self.tokens}, "
            f"in_channels={self.schema.in_channels}, out_channels={self.schema.n_prognostic}"
        )
