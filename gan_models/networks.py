"""Generators and discriminators: the course's fixed MLP pair and a small DCGAN-style conv pair.

Every generator maps z [B, latent_dim] -> images [B, 1, 28, 28] in [-1, 1] (tanh).
Every discriminator maps images [B, 1, 28, 28] -> logits/scores [B] and is split as
``D(x) = head(features(x))`` with ``features(x)`` [B, F], so the SAN head can separate the
feature extractor h from the last layer's direction omega (Takida et al. 2024).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from .registry import lookup


@dataclass(frozen=True)
class NetworkConfig:
    """What the networks need to know; a sub-view of the trainer's config."""

    architecture: str = "mlp"
    latent_dim: int = 100
    width: float = 1.0
    spectral_norm: bool = False
    dropout: float = 0.0
    batch_norm: bool = False
    san: bool = False  # D ends in a SANHead: set for a loss that declares san_head (gan_models.losses)


def _w(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _maybe_sn(layer: nn.Module, on: bool) -> nn.Module:
    return _sn(layer) if on else layer


class SANHead(nn.Module):
    """Last layer w = ||w|| * omega, with omega = w / ||w||.

    ``forward`` gives <h, w> (generator training, inference, DOT). ``split`` gives the two
    SAN terms: fun = <h * ||w||, omega.detach()> (trained by the base loss) and
    dir = <(h * ||w||).detach(), omega> (trained by the direction loss), per sony/san after
    its issue #4: ``fun`` detaches omega, ``dir`` detaches h.
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features) / in_features**0.5)
        self.bias = None

    def forward(self, h: Tensor) -> Tensor:
        return h @ self.weight

    def split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        scale = self.weight.norm()
        omega = self.weight / scale
        h_scaled = h * scale
        fun = h_scaled @ omega.detach()
        dir_ = h_scaled.detach() @ omega
        return fun, dir_


class Discriminator(nn.Module):
    """D(x) = head(features(x)); head is Linear(F, 1) or a SANHead."""

    features: nn.Module
    head: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        out = self.head(h)
        return out.reshape(-1)

    def san_split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(self.head, SANHead):
            raise TypeError("san_split needs a discriminator built with san=True")
        return self.head.split(self.features(x))


def _head(in_features: int, cfg: NetworkConfig) -> nn.Module:
    if cfg.san:
        return SANHead(in_features)
    return _maybe_sn(nn.Linear(in_features, 1), cfg.spectral_norm)


class MLPGenerator(nn.Module):
    """z(100) -> 256 -> 512 -> 1024 -> 784, LeakyReLU(0.2), tanh (the course's fixed G)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        dims = [cfg.latent_dim] + [_w(n, cfg.width) for n in (256, 512, 1024)]
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            layers.append(nn.Linear(d_in, d_out))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.LeakyReLU(0.2))
        layers += [nn.Linear(dims[-1], 784), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = cfg.latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, 28, 28)


class MLPDiscriminator(Discriminator):
    """784 -> 1024 -> 512 -> 256 -> 1, LeakyReLU(0.2), optional dropout and spectral norm."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        dims = [784] + [_w(n, cfg.width) for n in (1024, 512, 256)]
        layers: list[nn.Module] = [nn.Flatten()]
        for d_in, d_out in itertools.pairwise(dims):
            layers += [_maybe_sn(nn.Linear(d_in, d_out), cfg.spectral_norm), nn.LeakyReLU(0.2)]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
        self.features = nn.Sequential(*layers)
        self.head = _head(dims[-1], cfg)


class ConvGenerator(nn.Module):
    """DCGAN-style: z -> 128w x 7 x 7 -> 64w x 14 x 14 -> 1 x 28 x 28 (tanh)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        c1, c2 = _w(128, cfg.width), _w(64, cfg.width)
        norm: Callable[[int], nn.Module] = nn.BatchNorm2d if cfg.batch_norm else (lambda c: nn.Identity())
        self.c1 = c1
        self.project = nn.Linear(cfg.latent_dim, c1 * 7 * 7)
        self.net = nn.Sequential(
            norm(c1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, c2, 4, 2, 1),  # 7 -> 14
            norm(c2),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, 1, 4, 2, 1),  # 14 -> 28
            nn.Tanh(),
        )
        self.latent_dim = cfg.latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(-1, self.c1, 7, 7))


class ConvDiscriminator(Discriminator):
    """DCGAN-style: 1 x 28 x 28 -> 64w x 14 x 14 -> 128w x 7 x 7 -> 1."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        c1, c2 = _w(64, cfg.width), _w(128, cfg.width)
        drop: list[nn.Module] = [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []
        self.features = nn.Sequential(
            _maybe_sn(nn.Conv2d(1, c1, 4, 2, 1), cfg.spectral_norm),
            nn.LeakyReLU(0.2),
            *drop,
            _maybe_sn(nn.Conv2d(c1, c2, 4, 2, 1), cfg.spectral_norm),
            nn.LeakyReLU(0.2),
            *drop,
            nn.Flatten(),
        )
        self.head = _head(c2 * 7 * 7, cfg)


# name -> (generator class, discriminator class)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type[Discriminator]]] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (ConvGenerator, ConvDiscriminator),
}


def build_generator(cfg: NetworkConfig) -> nn.Module:
    return lookup(ARCHITECTURES, cfg.architecture, what="architecture")[0](cfg)


def build_discriminator(cfg: NetworkConfig) -> Discriminator:
    return lookup(ARCHITECTURES, cfg.architecture, what="architecture")[1](cfg)


# z ~ p_0: name -> draw(n, latent_dim, generator, device) -> [n, latent_dim]
LATENT_PRIORS: dict[str, Callable[[int, int, torch.Generator | None, torch.device], Tensor]] = {
    "normal": lambda n, d, gen, dev: torch.randn(n, d, generator=gen, device=dev),  # N(0, I)
    "uniform": lambda n, d, gen, dev: torch.rand(n, d, generator=gen, device=dev) * 2 - 1,  # U[-1, 1]^d
}


def sample_latent(n: int, latent_dim: int, prior: str, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> Tensor:
    """z ~ N(0, I) or U[-1, 1]^d, shape [n, latent_dim], on ``device``.

    Drawn where ``generator`` lives (a CPU generator gives the same z on every device; one on the GPU
    draws there, with no copy), then moved to ``device``."""
    draw = lookup(LATENT_PRIORS, prior, what="latent prior")
    where = generator.device if generator is not None else torch.device(device)
    return draw(n, latent_dim, generator, where).to(device)

