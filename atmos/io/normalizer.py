"""One normalization of model tensors: state statistics, residual statistics and the residual step.

Trainers (forecast, decoder, finetune, downscale) and the Forecaster all normalize the
same way, so they share this module:

* state: ``z = (x - mean) / std`` per channel, and back ``x = z * std + mean``;
* residual step (``outputs="residual"``): the model predicts the increment in units of
  the residual std, ``x[t+1] = x[t] + delta * residual_std`` — in normalized units
  ``z[t+1] = z[t] + delta * residual_std / std`` (:meth:`Normalizer.step`);
  with ``outputs="state"`` the model output is the next normalized state itself;
* the zero-std rule (:func:`atmos.io.stats.safe_std`): a std of 0, or below float resolution relative
  to the mean (a constant field such as an all-land mask), is replaced by 1 so that
  normalizing only removes the mean. :func:`atmos.io.stats.stat_values` applies the
  same rule (and warns) to statistics datasets.

The per-channel statistics travel as :class:`atmos.channels.Channel` records (the
checkpoint's channel table), so a Normalizer built at training time and one rebuilt
from the checkpoint at inference time are equal (:meth:`Normalizer.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from atmos.channels import Channel
from atmos.errors import ConfigError, DataError
from atmos.io.stats import safe_std

__all__ = ["OUTPUTS", "Normalizer"]

#: What a model's output means: an increment in residual-std units, or the next state.
OUTPUTS = ("residual", "state")
Outputs = Literal["residual", "state"]

class Normalizer(nn.Module):
    """Normalization of a model's prognostic channels and its residual step.

    Parameters
    ----------
    channels : sequence of Channel
        The prognostic (target) channels, in model order, with ``mean`` and ``std``
        (and ``residual_std`` for ``outputs="residual"``).
    outputs : {"residual", "state"}
        What the model output is (see the module docstring).

    Attributes
    ----------
    mean, std : torch.Tensor ``[C]``
        State statistics (float32 buffers; the zero-std rule applied).
    ratio : torch.Tensor ``[C]``
        ``residual_std / std`` (``outputs="residual"``) or ones: the factor from a model
        output to a normalized increment, and the loss unit per channel in normalized units.
    scale : torch.Tensor ``[C]``
        The loss unit per channel in physical units: ``residual_std`` (``outputs="residual"``)
        or ``std`` (``ratio * std``, computed in float64).

    Raises
    ------
    ConfigError
        ``outputs`` is not one of :data:`OUTPUTS`.
    DataError
        A channel lacks finite statistics (the message names it and the fix).
    """

    mean: torch.Tensor
    std: torch.Tensor
    ratio: torch.Tensor
    scale: torch.Tensor

    def __init__(self, channels: Sequence[Channel], outputs: Outputs = "residual") -> None:
        super().__init__()
        if outputs not in OUTPUTS:
            raise ConfigError(f"normalization outputs {outputs!r} is not one of {list(OUTPUTS)}.")
        chans = list(channels)
        if not chans:
            raise ConfigError("a Normalizer needs at least one channel.")
        bad = [c.name for c in chans if not _finite(c.mean) or not _finite(c.std)]
        if bad:
            raise DataError(
                f"channels {bad} have no finite normalization statistics (mean/std); compute them with "
                "atmos.io.compute_stats (or `atmos stats`) and pass them to the data."
            )
        if outputs == "residual":
            bad = [c.name for c in chans if not _finite(c.residual_std) or float(c.residual_std) <= 0]
            if bad:
                raise DataError(
                    f"no usable residual std for channels {bad}; use data.normalization: state, or compute "
                    "residual statistics (atmos.io.compute_stats computes them for time-varying variables)."
                )
        self.outputs: Outputs = outputs
        self.names = [c.name for c in chans]
        self.channels = chans
        mean = [float(c.mean) for c in chans]
        std = [safe_std(float(c.std), float(c.mean)) for c in chans]
        ratio = [float(c.residual_std) / s if outputs == "residual" else 1.0 for c, s in zip(chans, std, strict=True)]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.register_buffer("ratio", torch.tensor(ratio, dtype=torch.float32), persistent=False)
        scale = [float(c.residual_std) if outputs == "residual" else s for c, s in zip(chans, std, strict=True)]
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], names: Sequence[str] | None = None) -> Normalizer:
        """From a checkpoint's ``normalization`` section (``{"outputs", "channels": {name: stats}}``).

        ``names`` picks and orders the channels (default: all, in stored order).

        Raises
        ------
        DataError
            A requested channel is not in the section.
        """
        table = d.get("channels") or {}
        names = list(table) if names is None else list(names)
        missing = [n for n in names if n not in table]
        if missing:
            raise DataError(
                f"the checkpoint's normalization has no statistics for channels {missing}; it has {list(table)}."
            )
        chans = [Channel.from_dict({"name": n, **{k: v for k, v in table[n].items() if k != "name"}}) for n in names]
        return cls(chans, d.get("outputs", "residual"))

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``normalization`` section (inverse of :meth:`from_dict`)."""
        return {
            "outputs": self.outputs,
            "channels": {c.name: {k: v for k, v in c.to_dict().items() if k != "name"} for c in self.channels},
        }

    # -- tensors ----------------------------------------------------------------------
    def _v(self, t: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[dim] = -1
        return t.to(device=x.device).view(shape)

    def normalize(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """``(x - mean) / std`` with channels along ``dim`` (e.g. ``[B, C, *grid]``)."""
        return (x - self._v(self.mean, x, dim)) / self._v(self.std, x, dim)

    def denormalize(self, z: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """``z * std + mean`` with channels along ``dim``: physical units."""
        return z * self._v(self.std, z, dim) + self._v(self.mean, z, dim)

    def step(self, last: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The next normalized state from the last one ``[B, C, *grid]`` and the model output ``[B, C, *grid]``.

        ``last + out * ratio`` for residual outputs, ``out`` for state outputs.
        """
        if self.outputs == "residual":
            return last + out * self._v(self.ratio, out, 1)
        return out

    def extra_repr(self) -> str:
        return f"outputs={self.outputs!r}, channels={len(self.names)}"


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
