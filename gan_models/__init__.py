"""GAN models for MNIST-family data: data, networks, losses, the trainer and checkpoints.

The names below are imported from their submodules on first use (PEP 562), so importing the package,
or a light submodule such as ``gan_models.config``, does not import torch (the CLIs' ``--help``).
"""

from __future__ import annotations

from .lazy import lazy_exports

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CheckpointError", "LoadedModels", "OutputDirError", "check_writable_dir", "load_checkpoint",
                     "load_models", "save_checkpoint"), "checkpoint"),
    **dict.fromkeys(("ConfigError", "TrainConfig"), "config"),
    **dict.fromkeys(("DATA_ROOT_ENV", "DATASETS", "BatchSampler", "DataNotFoundError", "ImageSet", "load_images",
                     "resolve_data_root", "to_float"), "data"),
    **dict.fromkeys(("LOSSES", "get_loss"), "losses"),
    **dict.fromkeys(("ARCHITECTURES", "LATENT_PRIORS", "NetworkConfig", "build_discriminator", "build_generator",
                     "sample_latent"), "networks"),
    **dict.fromkeys(("DivergenceError", "Trainer", "TrainResult", "check_device", "train_gan"), "trainer"),
}

__all__ = [
    "ARCHITECTURES", "BatchSampler", "CheckpointError", "ConfigError", "DATASETS", "DATA_ROOT_ENV",
    "DataNotFoundError", "DivergenceError", "ImageSet", "LATENT_PRIORS", "LOSSES", "LoadedModels",
    "NetworkConfig", "OutputDirError", "TrainConfig", "TrainResult", "Trainer", "build_discriminator",
    "build_generator", "check_device", "check_writable_dir", "get_loss", "load_checkpoint", "load_images",
    "load_models", "resolve_data_root", "sample_latent", "save_checkpoint", "to_float", "train_gan",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

