"""Feature spaces: the registry and the differentiable extractors behind it.

Every extractor maps images [B, 1, 28, 28] in [-1, 1] to features [B, F], keeps its parameters
frozen (gradients flow to the input only, as embedded DOT needs) and exposes ``num_features``.
Spaces sharing a backbone ("classifier" and "logits") come from one forward pass in the Evaluator.

vgg16 uses torchvision's VGG16 convolutional trunk on the digit upsampled to 32x32 and repeated to
three ImageNet-normalised channels; 32x32 is the smallest input its five poolings reduce to 1x1,
so the output is the 512 channels of the last block. Its ImageNet weights are never downloaded:
they come from ``weights=`` (the CLIs' --vgg16-weights), else ``$GAN_VGG16_WEIGHTS``, else
torchvision's own cache file ``<torch hub dir>/checkpoints/vgg16-397923af.pth``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_models.registry import check_choice, lookup

from .classifier import NUM_CLASSES, PENULTIMATE_DIM, LeNet, WeightsError, file_sha256, load_classifier

VGG16_WEIGHTS_ENV = "GAN_VGG16_WEIGHTS"
VGG16_FILENAME = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1 file
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureSpace:
    """A registry entry: which backbone, which of its outputs, and whether it may score."""

    name: str
    backbone: str  # "classifier" | "classifier-alt" | "pixel" | "vgg16"
    output: str  # "penultimate" | "logits" | "pixels" | "conv5"
    dim: int
    scoring: bool  # False: refinement-only embedding, never used to score
    description: str


FEATURE_SPACES: dict[str, FeatureSpace] = {
    s.name: s
    for s in (
        FeatureSpace("classifier", "classifier", "penultimate", PENULTIMATE_DIM, True,
                     "shipped evaluator (LeNet, seed 0), penultimate layer"),
        FeatureSpace("logits", "classifier", "logits", NUM_CLASSES, True, "shipped evaluator's logits"),
        FeatureSpace("pixel", "pixel", "pixels", 784, True, "raw pixels in [-1, 1]"),
        FeatureSpace("vgg16", "vgg16", "conv5", 512, True,
                     "ImageNet VGG16 conv trunk on 32x32 RGB-repeated digits (local weights only)"),
        FeatureSpace("classifier-alt", "classifier-alt", "penultimate", PENULTIMATE_DIM, False,
                     "second classifier (seed 1), penultimate layer; embedded DOT only, never scores"),
    )
}


def check_feature_space(name: str) -> FeatureSpace:
    return lookup(FEATURE_SPACES, name, what="feature space")


class ClassifierFeatures(nn.Module):
    """A LeNet's penultimate activations [B, 128] or logits [B, 10]."""

    def __init__(self, net: LeNet, output: str):
        super().__init__()
        check_choice("classifier output", output, ("penultimate", "logits"))
        self.net = net
        self.output = output
        self.num_features = PENULTIMATE_DIM if output == "penultimate" else NUM_CLASSES

    def forward(self, x: Tensor) -> Tensor:
        return self.net.penultimate(x) if self.output == "penultimate" else self.net(x)


class PixelFeatures(nn.Module):
    num_features = 784

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class VGG16Features(nn.Module):
    """torchvision's VGG16 ``features`` trunk; [B, 1, 28, 28] in [-1, 1] -> [B, 512]."""

    num_features = 512
    mean: Tensor  # buffers, registered below
    std: Tensor

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate((x + 1.0) / 2.0, size=(32, 32), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std  # [B, 3, 32, 32]
        return self.trunk(x).flatten(1)  # [B, 512, 1, 1] -> [B, 512]


def resolve_vgg16_weights(weights: str | os.PathLike | None = None) -> Path:
    """The local VGG16 ImageNet weights file: argument, else $GAN_VGG16_WEIGHTS, else torchvision's cache."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"vgg16 weights file not found: {path}")
        return path
    env = os.environ.get(VGG16_WEIGHTS_ENV, "")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"vgg16 weights file not found: {path} (from ${VGG16_WEIGHTS_ENV})")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    if cached.is_file():
        return cached
    raise WeightsError(
        f"vgg16 ImageNet weights not found: nothing is downloaded; pass --vgg16-weights PATH (weights=PATH) "
        f"or set {VGG16_WEIGHTS_ENV}=PATH to torchvision's {VGG16_FILENAME}, or place it at {cached}"
    )


def load_vgg16(weights: str | os.PathLike | None = None, *,
               device: str | torch.device = "cpu") -> tuple[VGG16Features, str]:
    """The frozen VGG16 trunk and the sha256 of its weights file."""
    from torchvision.models.vgg import cfgs, make_layers

    path = resolve_vgg16_weights(weights)
    trunk = make_layers(cfgs["D"], batch_norm=False)  # VGG16's conv layers, as torchvision builds them
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        trunk_state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        trunk.load_state_dict(trunk_state)
    except Exception as exc:  # not a state dict, wrong keys or shapes, corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"vgg16 weights {path} cannot be loaded as torchvision's VGG16: {first}") from None
    module = VGG16Features(trunk).to(device).eval().requires_grad_(False)
    return module, file_sha256(path)


def feature_extractor(
    name: str,
    *,
    dataset: str = "mnist",
    device: str | torch.device = "cpu",
    weights: str | os.PathLike | None = None,
    evaluator_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A frozen, differentiable module mapping images [B, 1, 28, 28] in [-1, 1] to features [B, F].

    ``weights`` overrides the weights file (classifier spaces: another LeNet state dict; vgg16: the
    ImageNet file). The returned module carries ``num_features`` and ``weights_sha256``.
    """
    space = check_feature_space(name)
    module: nn.Module
    if space.backbone in ("classifier", "classifier-alt"):
        net, info = load_classifier(dataset, space.backbone, weights=weights, evaluator_dir=evaluator_dir,
                                    device=device)
        module, sha = ClassifierFeatures(net, space.output), info.sha256
    elif space.backbone == "vgg16":
        module, sha = load_vgg16(weights, device=device)
    else:
        module, sha = PixelFeatures(), "none"
    module = module.to(device).eval().requires_grad_(False)
    setattr(module, "weights_sha256", sha)  # noqa: B010 - a str, which nn.Module's typed __setattr__ does not take
    return module
