"""Lightweight decoders for new variables on a frozen backbone's latent.

After Lehmann et al. (2025), "Finetuning a Weather Foundation Model with Lightweight
Decoders for Unseen Physical Processes": the backbone (a trained :class:`ViT` or
:class:`UNetGRU`) is frozen and exposes its latent through ``forward_latent``; one
small MLP per new variable maps that latent to the variable at the step's target
time.

* ViT latent ``[B, Hp, Wp, D]`` (token embeddings before the patch decoder): per token
  ``LayerNorm -> Linear(D, h1) -> GELU -> ... -> Linear(h_k, p*p)``, unpatchified and
  cropped like the ViT's own patch decoder.
* U-Net-GRU latent ``[B, C0, 12, n, n]`` (finest decoder features): per pixel
  ``1x1 Conv(C0, h1) -> GELU -> ... -> 1x1 Conv(h_k, 1)`` on each HEALPix face; the
  hybrid ViT/U-Net's lat-lon latent ``[B, C0, nlat, nlon]`` the same way.

Targets are learnt in a transformed, standardized space::

    z = (T(y) - mean) / std,   T(y) = y                        ("identity")
                               T(y) = log1p(max(y, 0) / scale) ("log1p", precipitation-like)

and :meth:`LatentDecoder.to_physical` inverts it (``log1p`` outputs are >= 0 by
construction). ``mean``, ``std`` and ``scale`` are data of the config, so a decoder
checkpoint is self-contained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from atmos.errors import ConfigError
from atmos.grids.healpix import HealpixGrid
from atmos.models.base import LatentBackbone
from atmos.models.fourier import FourierFeatures, check_fourier_config, unit_vectors
from atmos.models.registry import register_model
from atmos.models.vit import unpatchify

__all__ = ["TRANSFORMS", "LatentDecoder", "LatentDecoderConfig"]

#: Target transforms: ``identity`` or ``log1p`` (with a ``scale`` in the variable's units).
TRANSFORMS = ("identity", "log1p")


@dataclass
class LatentDecoderConfig:
    """Configuration of :class:`LatentDecoder` (JSON-safe through ``dataclasses.asdict``).

    Parameters
    ----------
    variables : list of str
        New variables, one decoder MLP each (canonical names, e.g. ``total_precipitation_6hr``).
    latent : dict
        The backbone's ``latent_spec()`` (``kind`` ``tokens`` or ``pixels``, ``dim``,
        grid geometry).
    hidden : list of int
        Hidden widths of every per-variable MLP (``[512, 256]`` as in the paper).
    transforms : dict
        ``variable -> {"kind": "identity" | "log1p", "scale": float}`` (missing: identity).
    mean, std : dict
        ``variable -> float``: statistics of the transformed target (defaults 0 and 1).
    units : dict
        ``variable -> units`` of the physical values (recorded, not used).
    fourier_features : dict or None
        ``{"n": N, "scale": S}``: concatenate ``2 N`` random Fourier features of each
        latent position (token centre, or HEALPix pixel centre) to the latent before
        the MLPs (:class:`atmos.models.fourier.FourierFeatures`); None adds nothing.
    """

    variables: list[str] = field(default_factory=lambda: ["total_precipitation_6hr"])
    latent: dict[str, Any] = field(default_factory=dict)
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    transforms: dict[str, dict[str, Any]] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    fourier_features: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.fourier_features = check_fourier_config(self.fourier_features, "decoder fourier_features")
        if isinstance(self.variables, str) or not self.variables:
            raise ConfigError(f"decoder 'variables' must be a non-empty list of names, got {self.variables!r}.")
        self.variables = [str(v) for v in self.variables]
        if len(set(self.variables)) != len(self.variables):
            raise ConfigError(f"decoder 'variables' has duplicates: {self.variables}.")
        if not isinstance(self.latent, Mapping):
            raise ConfigError(
                f"decoder 'latent' must be a backbone's latent_spec() dict, got {self.latent!r}. "
                "Build it with LatentDecoder.for_backbone(model, ...)."
            )
        self.latent = dict(self.latent)
        kind = self.latent.get("kind")
        if kind not in ("tokens", "pixels"):
            raise ConfigError(
                f"decoder 'latent' must be a backbone's latent_spec() with kind 'tokens' (ViT) or 'pixels' "
                f"(U-Net-GRU), got {self.latent!r}. Build it with LatentDecoder.for_backbone(model, ...)."
            )
        for k in ("dim", "grid") + (("tokens", "patch_size", "pad_lat", "pad_lon") if kind == "tokens" else ()):
            if k not in self.latent:
                raise ConfigError(f"decoder 'latent' lacks {k!r}: {self.latent!r}.")
        self.hidden = [int(h) for h in self.hidden]
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"decoder 'hidden' widths must be positive integers, got {self.hidden!r}.")
        for name in ("transforms", "mean", "std", "units"):
            d = getattr(self, name)
            if not isinstance(d, Mapping):
                raise ConfigError(f"decoder {name!r} must be a dict 'variable -> value', got {d!r}.")
            unknown = sorted(set(d) - set(self.variables))
            if unknown:
                raise ConfigError(
                    f"decoder {name!r} names {unknown}, which are not among the variables {self.variables}."
                )
        transforms = {}  # a copy: the caller's dict is not modified
        for var, t in self.transforms.items():
            if isinstance(t, str):
                t = {"kind": t}
            if not isinstance(t, Mapping):
                raise ConfigError(
                    f"transform of {var!r} must be a kind name or a dict {{'kind': ..., 'scale': ...}}, got {t!r}."
                )
            t = dict(t)
            transforms[var] = t
            if t.get("kind", "identity") not in TRANSFORMS:
                raise ConfigError(
                    f"transform of {var!r} must have kind in {list(TRANSFORMS)}, got {t!r}."
                )
            if t.get("kind") == "log1p":
                scale = _as_float(t.get("scale"))
                if scale is None or not math.isfinite(scale) or scale <= 0:
                    raise ConfigError(
                        f"the log1p transform of {var!r} needs a positive 'scale' in the variable's units "
                        f"(e.g. its mean), got {t.get('scale')!r}."
                    )
        self.transforms = transforms
        for name, d, default in (("mean", self.mean, 0.0), ("std", self.std, 1.0)):
            for var in self.variables:
                val = _as_float(d.get(var, default))
                if val is None or not math.isfinite(val) or (name == "std" and val <= 0):
                    raise ConfigError(
                        f"decoder {name} of {var!r} must be a finite number{' > 0' if name == 'std' else ''}, "
                        f"got {d.get(var, default)!r}."
                    )


def _as_float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _mlp(kind: str, sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b) if kind == "tokens" else nn.Conv2d(a, b, 1))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class LatentDecoder(nn.Module):
    """One MLP per new variable on a frozen backbone's latent.

    Parameters
    ----------
    config : LatentDecoderConfig

    Forward
    -------
    latent : ViT ``[B, Hp, Wp, D]``, U-Net-GRU ``[B, C0, 12, n, n]`` or hybrid ``[B, C0, nlat, nlon]``
        The backbone's ``forward_latent`` output.

    Returns ``[B, len(variables), *grid]`` in the standardized transformed space
    (``*grid`` = ``(nlat, nlon)`` or ``(12, n, n)``); :meth:`to_physical` gives units.
    """

    def __init__(self, config: LatentDecoderConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else LatentDecoderConfig()
        self.config = cfg
        lat = cfg.latent
        self.kind = lat["kind"]
        self.grid = tuple(int(g) for g in lat["grid"])
        dim = int(lat["dim"])
        out = int(lat["patch_size"]) ** 2 if self.kind == "tokens" else 1
        self.norm = nn.LayerNorm(dim) if self.kind == "tokens" else None
        ff = cfg.fourier_features
        self.fourier = None if ff is None else FourierFeatures(self._positions(), ff["n"], ff["scale"], ff["seed"])
        width = dim + (0 if self.fourier is None else self.fourier.channels)
        self.heads = nn.ModuleDict({v: _mlp(self.kind, [width, *cfg.hidden, out]) for v in cfg.variables})
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        mean = [float(cfg.mean.get(v, 0.0)) for v in cfg.variables]
        std = [float(cfg.std.get(v, 1.0)) for v in cfg.variables]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def _positions(self) -> torch.Tensor:
        """Unit vectors of the latent positions: token centres ``[3, Hp, Wp]`` (equiangular
        grid without poles, the ViT's padding extrapolated and clipped at the poles) or
        HEALPix pixel centres ``[3, 12, n, n]``."""
        lat = self.config.latent
        if self.kind == "pixels" and len(self.grid) == 2:  # lat-lon pixels, equiangular without poles
            nlat, nlon = self.grid
            la = -90.0 + (180.0 / nlat) * (torch.arange(nlat, dtype=torch.float64) + 0.5)
            lo = (360.0 / nlon) * torch.arange(nlon, dtype=torch.float64)
            return unit_vectors(la.numpy()[:, None], lo.numpy()[None, :])
        if self.kind == "pixels":
            grid = HealpixGrid(self.grid[-1])
            la, lo = grid.centers()
            return unit_vectors(grid.cells_to_faces(la), grid.cells_to_faces(lo))
        nlat, nlon = self.grid
        p = int(lat["patch_size"])
        hp, wp = (int(t) for t in lat["tokens"])
        rows = torch.arange(hp * p, dtype=torch.float64) - int(lat["pad_lat"][0])
        cols = torch.arange(wp * p, dtype=torch.float64) - int(lat["pad_lon"][0])
        tlat = (-90.0 + (180.0 / nlat) * (rows + 0.5)).view(hp, p).mean(1).clamp(-90.0, 90.0)
        tlon = ((360.0 / nlon) * cols).view(wp, p).mean(1)
        return unit_vectors(tlat.numpy()[:, None], tlon.numpy()[None, :])

    @classmethod
    def for_backbone(cls, backbone: nn.Module, variables: list[str], **config: Any) -> LatentDecoder:
        """A decoder for ``backbone``'s latent (``backbone.latent_spec()``)."""
        if not isinstance(backbone, LatentBackbone):
            raise ConfigError(
                f"{type(backbone).__name__} exposes no latent (no latent_spec/forward_latent); decoders work on "
                "the registered ViT and UNetGRU backbones."
            )
        return cls(LatentDecoderConfig(variables=list(variables), latent=backbone.latent_spec(), **config))

    @property
    def variables(self) -> list[str]:
        return list(self.config.variables)

    def check_latent(self, latent: torch.Tensor) -> None:
        lat = self.config.latent
        if self.kind == "tokens":
            want = (*[int(t) for t in lat.get("tokens", latent.shape[1:3])], int(lat["dim"]))
            got = tuple(latent.shape[1:])
        else:
            want = (int(lat["dim"]), *self.grid)
            got = tuple(latent.shape[1:])
        if latent.ndim != len(want) + 1 or got != want:
            raise ConfigError(
                f"latent of shape {tuple(latent.shape)} does not fit this decoder, built for [B, {', '.join(map(str, want))}]"
                f" ({lat.get('kind')} latent); use the backbone the decoder was trained on."
            )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        self.check_latent(latent)
        if self.kind == "tokens":
            x = self.norm(latent)
            if self.fourier is not None:
                ff = self.fourier().to(x).permute(1, 2, 0)  # [Hp, Wp, 2n]
                x = torch.cat([x, ff.expand(x.shape[0], *ff.shape)], -1)
            lat = self.config.latent
            outs = [
                unpatchify(head(x), int(lat["patch_size"]), lat["pad_lat"], lat["pad_lon"], self.grid)
                for head in self.heads.values()
            ]
            return torch.cat(outs, dim=1)
        if latent.ndim == 4:  # lat-lon pixels [B, C, nlat, nlon] (the hybrid ViT/U-Net)
            x = latent
            if self.fourier is not None:
                ff = self.fourier().to(x)  # [2n, nlat, nlon]
                x = torch.cat([x, ff.expand(x.shape[0], *ff.shape)], 1)
            return torch.cat([head(x) for head in self.heads.values()], dim=1)
        b, c, f, n, _ = latent.shape
        x = latent.transpose(1, 2).reshape(b * f, c, n, n)
        if self.fourier is not None:
            ff = self.fourier().to(x).transpose(0, 1)  # [12, 2n, n, n]
            x = torch.cat([x, ff.repeat(b, 1, 1, 1)], 1)
        out = torch.cat([head(x) for head in self.heads.values()], dim=1)  # [B*12, V, n, n]
        return out.view(b, f, -1, n, n).transpose(1, 2).contiguous()

    # -- target transforms ---------------------------------------------------------------------
    def _per_var(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.ndim - 2)

    def from_physical(self, y: torch.Tensor) -> torch.Tensor:
        """Physical values ``[B, V, *grid]`` -> standardized transformed targets."""
        cols = []
        for i, v in enumerate(self.config.variables):
            t = self.config.transforms.get(v, {})
            yi = y[:, i]
            if t.get("kind") == "log1p":
                yi = torch.log1p(yi.clamp_min(0.0) / float(t["scale"]))
            cols.append(yi)
        z = torch.stack(cols, dim=1)
        shape = self._per_var(z)
        return (z - self.mean.view(shape)) / self.std.view(shape)

    def to_physical(self, z: torch.Tensor) -> torch.Tensor:
        """Standardized transformed values ``[B, V, *grid]`` -> physical units."""
        shape = self._per_var(z)
        z = z * self.std.view(shape) + self.mean.view(shape)
        cols = []
        for i, v in enumerate(self.config.variables):
            t = self.config.transforms.get(v, {})
            zi = z[:, i]
            if t.get("kind") == "log1p":
                zi = float(t["scale"]) * torch.expm1(zi.clamp_min(0.0))
            cols.append(zi)
        return torch.stack(cols, dim=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, variables={self.config.variables}, hidden={self.config.hidden}"


register_model("decoder", LatentDecoder, LatentDecoderConfig)
