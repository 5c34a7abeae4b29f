"""Noise inputs of stochastic emulators (``data.noise_channels``, ``loss.name: crps``).

A stochastic model is a deterministic network with ``N`` extra forcing channels of
N(0, 1) noise, spatially white and drawn anew for every step and member (the noise-input
form of anemoi's ensemble models and of FGN-style generators). The trainer and the
Forecaster draw them with this one function, from a seed, so a rollout with a given
``--seed`` is reproducible and a resumed training run is bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NOISE_PREFIX", "draw_noise", "noise_names"]

#: Forcing channels named ``noise_0``, ``noise_1`` ... are noise inputs.
NOISE_PREFIX = "noise_"


def noise_names(n: int) -> list[str]:
    """The forcing-channel names of ``n`` noise inputs (appended after the data's forcings)."""
    return [f"{NOISE_PREFIX}{i}" for i in range(int(n))]


def draw_noise(
    batch: int, steps: int, channels: int, grid_shape: Sequence[int], seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """N(0, 1) noise ``[batch, steps, channels, *grid_shape]`` float32 from ``seed``.

    Drawn on the CPU (the same numbers on any device) and moved to ``device``.
    """
    g = torch.Generator()
    g.manual_seed(int(seed) % (2**63 - 1))
    x = torch.randn((int(batch), int(steps), int(channels), *map(int, grid_shape)), generator=g)
    return x.to(device)
