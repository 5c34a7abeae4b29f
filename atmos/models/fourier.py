"""Random Fourier features of position on the sphere, against spectral bias.

After Tancik et al. (2020), "Fourier Features Let Networks Learn High Frequency
Functions in Low Dimensional Domains", as used against the spectral bias of
weather emulators and downscalers (Chattopadhyay & Hassanzadeh, the MEDIDA study of
spectral bias-reduced networks). A coordinate-taking network gets, in place of (or
beside) the raw position, the embedding::

    gamma(x) = [cos(2 pi B x), sin(2 pi B x)]      x in R^3: the unit vector of (lat, lon)
                                                   B ~ N(0, scale^2), shape [n, 3]

so ``2 n`` channels. A larger ``scale`` puts more of the embedding's power at high
wavenumbers, which is what lets the following layers fit small scales. Using the
unit vector (not lat/lon) makes the embedding continuous across the dateline and the
poles; a rotation ``R`` of the sphere maps ``gamma_B(R x) = gamma_{B R}(x)``, so a
shift in longitude is a rotation of ``B`` about the polar axis.

``B`` is drawn once from ``seed`` and saved with the weights (a persistent buffer);
the positions are recomputed from the grid (not saved).

Config form, shared by the heads and decoders that take it::

    fourier_features: {"n": 16, "scale": 4.0}          # optional "seed" (default 0)
    fourier_features: None                             # off (adds nothing)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from atmos.errors import ConfigError

__all__ = ["FourierFeatures", "check_fourier_config", "unit_vectors"]


def check_fourier_config(value: Any, where: str = "fourier_features") -> dict[str, Any] | None:
    """Validate a ``fourier_features`` setting; returns ``{"n", "scale", "seed"}`` or None."""
    if value is None or value is False:
        return None
    hint = f"set {where}: {{n: 16, scale: 4.0}} (n >= 1 frequencies, scale > 0), or null to turn it off"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping {{n, scale}} or null, got {value!r}; {hint}.")
    unknown = sorted(set(value) - {"n", "scale", "seed"})
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; valid keys are ['n', 'scale', 'seed']; {hint}.")
    try:
        n = int(value.get("n", 16))
        scale = float(value.get("scale", 1.0))
        seed = int(value.get("seed", 0))
    except (TypeError, ValueError):
        raise ConfigError(f"{where} = {dict(value)!r} has a non-numeric value; {hint}.") from None
    if n < 1 or n != value.get("n", 16) or not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"{where} = {dict(value)!r} is out of range; {hint}.")
    return {"n": n, "scale": scale, "seed": seed}


def unit_vectors(lat_deg: Any, lon_deg: Any) -> torch.Tensor:
    """Unit vectors ``[3, *shape]`` (x, y, z) of points given in degrees (same shape, or broadcastable)."""
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    lat, lon = np.broadcast_arrays(lat, lon)
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return torch.as_tensor(xyz, dtype=torch.float32)


class FourierFeatures(nn.Module):
    """Random Fourier features ``[2n, *shape]`` of fixed positions on the sphere.

    Parameters
    ----------
    xyz : Tensor ``[3, *shape]``
        Unit vectors of the positions (:func:`unit_vectors`), e.g. ``[3, nlat, nlon]``
        or ``[3, 12, nside, nside]``.
    n : int
        Number of frequencies (the embedding has ``2 n`` channels).
    scale : float
        Standard deviation of the frequencies ``B`` (cycles per unit length; a great
        circle is ``2 pi`` long, so ``scale`` of 1 gives about 6 cycles around the globe).
    seed : int
        Seed of the draw of ``B``.

    Forward
    -------
    ``forward()`` -> ``[2n, *shape]`` (cos block, then sin block), float32.
    :meth:`encode` embeds other positions ``[3, ...]`` with the same ``B``.
    """

    def __init__(self, xyz: torch.Tensor, n: int, scale: float, seed: int = 0) -> None:
        super().__init__()
        if xyz.ndim < 1 or xyz.shape[0] != 3:
            raise ConfigError(f"FourierFeatures expects unit vectors [3, ...], got shape {tuple(xyz.shape)}.")
        self.n, self.scale, self.seed = int(n), float(scale), int(seed)
        g = torch.Generator().manual_seed(self.seed)
        self.register_buffer("frequencies", torch.randn(self.n, 3, generator=g) * self.scale)
        self.register_buffer("xyz", xyz.to(torch.float32), persistent=False)

    @property
    def channels(self) -> int:
        return 2 * self.n

    def encode(self, xyz: torch.Tensor, frequencies: torch.Tensor | None = None) -> torch.Tensor:
        """``[3, *shape]`` unit vectors -> ``[2n, *shape]`` features (``frequencies`` defaults to ``B``)."""
        b = self.frequencies if frequencies is None else frequencies
        proj = 2.0 * math.pi * torch.tensordot(b.to(xyz), xyz, dims=([1], [0]))
        return torch.cat([torch.cos(proj), torch.sin(proj)], 0)

    def forward(self) -> torch.Tensor:
        return self.encode(self.xyz)

    def extra_repr(self) -> str:
        return f"n={self.n}, scale={self.scale}, seed={self.seed}, positions={tuple(self.xyz.shape[1:])}"
