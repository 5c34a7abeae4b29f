"""Tiny model configurations for fast tests and examples (seconds on a CPU)."""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_MODEL_CONFIGS"]

# registry name -> keyword arguments of atmos.models.build for a model small enough for unit tests
TINY_MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "vit": {
        "nlat": 8,
        "nlon": 16,
        "patch_size": 2,
        "embed_dim": 16,
        "depth": 2,
        "num_heads": 2,
        "window_size": [2, 2],
    },
    "unet_gru": {"nside": 4, "channels": [6, 4], "dilations": [1, 1], "upscale_factor": 2},
    "hybrid": {
        "nlat": 8,
        "nlon": 16,
        "channels": [4, 8],
        "embed_dim": 8,
        "depth": 2,
        "num_heads": 2,
        "window_size": [1, 2],
    },
}
