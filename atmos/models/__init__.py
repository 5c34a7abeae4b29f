"""Tensor-only emulators (never imports atmos.io or atmos.train).

Contract of every model (one step; the caller rolls out)::

    delta, new_state = model(inputs, forcings=None, statics=None, state=None)

    inputs   [B, history, C_in, *grid]        normalized state at t-history+1 .. t
    forcings [B, history + 1, C_f, *grid]     prescribed fields at those steps and t+1
    statics  [C_s, *grid] | [B, C_s, *grid] | [B, 1, C_s, *grid]
    delta    [B, C_out, *grid]                x[t+1] - x[t] for the prognostic channels
    state    recurrent state (UNetGRU: tuple of GRU hidden tensors; ViT: None)

``*grid`` is ``(nlat, nlon)`` for :class:`ViT` and :class:`HybridViTUNet`, and ``(12, nside, nside)`` (HEALPix
faces) for :class:`UNetGRU`. The prognostic channels are the first ``C_out`` input
channels, so the next state is ``inputs[:, -1, :C_out] + delta``. Channel names are
in ``model.schema`` (:class:`ChannelSchema`).
"""

from atmos.models.decoder import LatentDecoder, LatentDecoderConfig
from atmos.models.heads import DownscalingHead, DownscalingHeadConfig
from atmos.models.hybrid import HybridConfig, HybridViTUNet
from atmos.models.registry import (
    MODELS,
    build,
    build_from_config,
    config_class,
    config_to_dict,
    register_model,
)
from atmos.models.schema import ChannelSchema
from atmos.models.spectral import apply_spectral_norm, has_spectral_norm, remove_spectral_norm
from atmos.models.unet_gru import UNetGRU, UNetGRUConfig
from atmos.models.vit import ViT, ViTConfig

__all__ = [
    "MODELS",
    "ChannelSchema",
    "DownscalingHead",
    "DownscalingHeadConfig",
    "HybridConfig",
    "HybridViTUNet",
    "LatentDecoder",
    "LatentDecoderConfig",
    "UNetGRU",
    "UNetGRUConfig",
    "ViT",
    "ViTConfig",
    "apply_spectral_norm",
    "build",
    "build_from_config",
    "config_class",
    "config_to_dict",
    "has_spectral_norm",
    "register_model",
    "remove_spectral_norm",
]
