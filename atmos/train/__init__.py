"""Training emulators: ``fit(config)``, configs, losses, checkpoints, DDP and SLURM helpers.

>>> from atmos.train import fit, load_config                       # doctest: +SKIP
>>> result = fit(load_config("configs/vit_speedy.yaml", ["schedule.epochs=2"]))  # doctest: +SKIP
>>> result.validation["rmse"]["geopotential_500"]                  # doctest: +SKIP
"""

from atmos.train.checkpoint import Checkpoint, find_checkpoint, load_checkpoint, load_model, save_checkpoint
from atmos.train.config import (
    DataConfig,
    DecoderConfig,
    DownscaleConfig,
    LossConfig,
    ModelConfig,
    MultistepConfig,
    OptimizerConfig,
    OutputConfig,
    ScheduleConfig,
    TrainConfig,
    ValidationConfig,
    config_to_dict,
    load_config,
    save_config,
)
from atmos.train.core import EMA, FitResult
from atmos.train.loop import rollout
from atmos.train.losses import AreaWeightedMSE, channel_weights, level_weight
from atmos.train.tasks import fit

__all__ = [
    "EMA",
    "AreaWeightedMSE",
    "Checkpoint",
    "DataConfig",
    "DecoderConfig",
    "DownscaleConfig",
    "FitResult",
    "LossConfig",
    "ModelConfig",
    "MultistepConfig",
    "OptimizerConfig",
    "OutputConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValidationConfig",
    "channel_weights",
    "config_to_dict",
    "find_checkpoint",
    "fit",
    "level_weight",
    "load_checkpoint",
    "load_config",
    "load_model",
    "rollout",
    "save_checkpoint",
    "save_config",
]
