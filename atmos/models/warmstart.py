"""Warm-start a model from another model's weights when its inputs grew.

A stochastic emulator is the deterministic one with noise inputs appended to its forcings
(``data.noise_channels``); fine-tuning it from the deterministic checkpoint needs the trained weights
in every layer and, in the one layer that reads the folded input channels, the trained columns moved
to where the same inputs sit now and zeros for the new ones. With zero columns the warm-started model
computes exactly what the source model computed until training moves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from atmos.errors import ConfigError
from atmos.models.schema import ChannelSchema

__all__ = ["WarmStart", "warm_start_state"]


@dataclass
class WarmStart:
    """What :func:`warm_start_state` did: tensors copied whole, input layers remapped, new input channels."""

    copied: list[str] = field(default_factory=list)
    remapped: list[str] = field(default_factory=list)
    new_inputs: list[str] = field(default_factory=list)


def warm_start_state(
    model: torch.nn.Module,
    schema: ChannelSchema,
    state: Mapping[str, torch.Tensor],
    source_schema: ChannelSchema,
    *,
    source: str = "the checkpoint",
) -> tuple[dict[str, torch.Tensor], WarmStart]:
    """The state dict for ``model`` (built for ``schema``) filled from ``state`` (a model of ``source_schema``).

    Every tensor of the model must be in ``state``, of the same shape, except the input layers: tensors
    whose dimension 1 is ``schema.in_channels`` where the source's is ``source_schema.in_channels``
    (e.g. the ViT's ``patch_embed.weight`` ``[D, C_in, p, p]``). Their columns are matched by
    :meth:`ChannelSchema.input_labels`; the columns of inputs the source did not have are zero.

    Parameters
    ----------
    model : nn.Module
        The new model (its current weights give dtype/shape; they are not used).
    schema, source_schema : ChannelSchema
        The channels of the new model and of the source. The outputs and every source input must be
        the same (the new model may only add inputs).
    state : mapping of str to Tensor
        The source's weights.
    source : str
        Named in errors.

    Raises
    ------
    ConfigError
        Outputs differ, a source input is gone, a tensor is missing, left over or of another shape.
    """
    if list(schema.outputs) != list(source_schema.outputs):
        raise ConfigError(
            f"cannot warm-start from {source}: it predicts {source_schema.outputs}, this model predicts "
            f"{schema.outputs}. Use the same data.variables and data.levels as the source run."
        )
    new_labels, old_labels = schema.input_labels(), source_schema.input_labels()
    gone = [lab for lab in old_labels if lab not in new_labels]
    if gone:
        raise ConfigError(
            f"cannot warm-start from {source}: its inputs {gone} are not inputs of this model. A warm start may "
            "only add inputs (e.g. data.noise_channels); keep the source's forcings, statics and history."
        )
    cols = torch.tensor([new_labels.index(lab) for lab in old_labels])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ConfigError(
            f"cannot warm-start from {source}: tensors missing from it {missing[:8]}, tensors it has that this "
            f"model lacks {extra[:8]}. Build the same model (model.name and model.params) as the source run."
        )
    out: dict[str, torch.Tensor] = {}
    report = WarmStart(new_inputs=[lab for lab in new_labels if lab not in old_labels])
    for k, t in own.items():
        s = state[k]
        if tuple(s.shape) == tuple(t.shape):
            out[k] = s.to(t.dtype).clone()
            report.copied.append(k)
            continue
        is_input = (
            s.ndim == t.ndim >= 2
            and s.shape[1] == source_schema.in_channels
            and t.shape[1] == schema.in_channels
            and s.shape[:1] == t.shape[:1]
            and s.shape[2:] == t.shape[2:]
        )
        if not is_input:
            raise ConfigError(
                f"cannot warm-start from {source}: {k!r} is {list(s.shape)} there and {list(t.shape)} here. "
                "Build the same model (model.name and model.params) as the source run."
            )
        w = torch.zeros_like(t)
        w[:, cols] = s.to(t.dtype)
        out[k] = w
        report.remapped.append(k)
    return out, report
