import pytest
import torch

from gan_models import NetworkConfig, build_discriminator, build_generator


@pytest.fixture(scope="module")
def small_gan():
    """A narrow, untrained MLP pair with the project's real architecture (latent_dim 8)."""
    torch.manual_seed(0)
    cfg = NetworkConfig(latent_dim=8, width=0.125)
    return build_generator(cfg).eval(), build_discriminator(cfg).eval()
