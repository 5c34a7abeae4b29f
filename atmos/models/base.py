"""The backbone contract: what trainers, decoders and the Forecaster may rely on.

Models are typed against these Protocols (as earth2studio types its prognostic models
against ``PrognosticModel``), not probed with ``hasattr``::

    out, new_state = model(inputs, forcings=None, statics=None, state=None)

    inputs   [B, history, C_in, *grid]        normalized state at t-history+1 .. t
    forcings [B, history + 1, C_f, *grid]     prescribed fields at those steps and t+1
    statics  [C_s, *grid] | [B, C_s, *grid] | [B, 1, C_s, *grid]
    out      [B, C_out, *grid]                the model output for the prognostic channels
    state    recurrent state (None for a model without one)

What ``out`` means is data, not code: the checkpoint's normalization section says
whether it is an increment in residual-std units or the next normalized state, and
:class:`atmos.io.normalizer.Normalizer` turns it into the next state. ``*grid`` is
``model.grid`` (``(nlat, nlon)`` on a lat-lon grid, ``(12, nside, nside)`` on HEALPix
faces); the channel names are ``model.schema``.

A :class:`LatentBackbone` also exposes the features before its output layer, so that
lightweight decoders can read them (``forward == decode_latent(forward_latent(...))``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from atmos.models.schema import ChannelSchema

__all__ = ["Backbone", "LatentBackbone", "LatentForward", "SupportsComputeSwitches"]


@runtime_checkable
class Backbone(Protocol):
    """A one-step emulator (see the module docstring for the tensor contract).

    Attributes
    ----------
    schema : ChannelSchema
        Named input, output, forcing and static channels and the history length.
    grid : tuple of int
        The spatial shape ``*grid`` of every tensor.
    recurrent : bool
        Whether the model carries a state from step to step (reset by the caller).
    """

    schema: ChannelSchema
    grid: tuple[int, ...]

    @property
    def recurrent(self) -> bool: ...

    def __call__(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: Any = None,
    ) -> tuple[torch.Tensor, Any]: ...


@runtime_checkable
class LatentBackbone(Backbone, Protocol):
    """A :class:`Backbone` whose last features a decoder can read."""

    def latent_spec(self) -> dict[str, Any]:
        """JSON-safe geometry of the latent (``kind``, ``dim``, grid sizes)."""
        ...

    def forward_latent(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """``(latent, new_state)``: the features before the output layer."""
        ...

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """The output layer: latent -> ``out [B, C_out, *grid]``."""
        ...


@runtime_checkable
class SupportsComputeSwitches(Protocol):
    """A backbone that honours the trainer's memory switches (``compute.*`` of the train config).

    ``activation_checkpointing``: while gradients are being recorded, each of the model's
    blocks (transformer blocks, U-Net stages) is recomputed in the backward pass instead
    of keeping its activations. ``channels_last``: 2-D convolutions run on channels-last
    tensors. Neither changes the weights or the function computed.
    """

    activation_checkpointing: bool
    channels_last: bool

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor: ...


class LatentForward(nn.Module):
    """``forward = decode_latent(forward_latent(...))``, shared by the latent backbones.

    It also carries the two memory switches of :class:`SupportsComputeSwitches` (plain
    attributes, not weights: off by default, never saved).
    """

    activation_checkpointing: bool = False
    channels_last: bool = False

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``block(x)``, recomputed in the backward pass when activation checkpointing is on
        and gradients are recorded (non-reentrant :func:`torch.utils.checkpoint.checkpoint`)."""
        if self.activation_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """One step: ``(out [B, C_out, *grid], new_state)`` (see :mod:`atmos.models.base`)."""
        latent, new_state = self.forward_latent(inputs, forcings, statics, state)  # type: ignore[attr-defined]
        return self.decode_latent(latent), new_state  # type: ignore[attr-defined]
