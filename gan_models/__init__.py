"""GAN models for MNIST-family data: data, networks, losses, the trainer and checkpoints."""

from .checkpoint import (
    CheckpointError,
    LoadedModels,
    OutputDirError,
    check_writable_dir,
    load_checkpoint,
    load_models,
    save_checkpoint,
)
from .config import ConfigError, TrainConfig
from .data import (
    DATA_ROOT_ENV,
    DATASETS,
    BatchSampler,
    DataNotFoundError,
    ImageSet,
    load_images,
    resolve_data_root,
    to_float,
)
from .losses import LOSSES, get_loss
from .networks import ARCHITECTURES, LATENT_PRIORS, NetworkConfig, build_discriminator, build_generator, sample_latent
from .trainer import DivergenceError, Trainer, TrainResult, check_device, train_gan

__all__ = [
    "ARCHITECTURES", "BatchSampler", "CheckpointError", "ConfigError", "DATASETS", "DATA_ROOT_ENV",
    "DataNotFoundError", "DivergenceError", "ImageSet", "LATENT_PRIORS", "LOSSES", "LoadedModels",
    "NetworkConfig", "OutputDirError", "TrainConfig", "TrainResult", "Trainer", "build_discriminator", "build_generator",
    "check_device", "check_writable_dir", "get_loss", "load_checkpoint", "load_images", "load_models", "resolve_data_root", "sample_latent",
    "save_checkpoint", "to_float", "train_gan",
]
