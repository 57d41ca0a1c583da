"""Everything a trial needs besides its params, built once by the driver and shipped through Ray.

On a cluster the nodes share no disk, so a trial must never open a path: the driver reads the
dataset split (one uint8 tensor, 47 MB for MNIST's train split), builds the evaluator with its real
statistics already computed (its classifier weights and cached features travel inside it), builds
the embedding networks the study's refiners may use, and hands all of it to every trial through
Ray's object store (``tune.with_parameters`` puts it there once; each node fetches it once).
``--data-root`` / ``GAN_DATA_ROOT`` and the evaluation cache are read by the driver only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from .tracking import StudyRun

if TYPE_CHECKING:
    from evaluation import Evaluator


@dataclass(frozen=True)
class TrialContext:
    """The study-wide settings of a trial: the same for every trial of a study."""

    study: str  # registry name
    study_name: str  # the Optuna study / MLflow experiment name
    budget: str
    seed: int
    dataset: str
    study_run: StudyRun
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # a fraction shares a GPU with other trials
    precision: str = "fp32"  # of training and refinement (gan_models.precision)

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_trial > 0


@dataclass(frozen=True)
class TrialInputs:
    """What the driver reads from its own disk for every trial."""

    train_images: Tensor  # uint8 [N, 28, 28], the dataset's train split
    evaluator: Evaluator  # prepared: scoring needs neither data nor disk
    embedders: dict[str, nn.Module]  # feature space name -> E, for the embedded DOT methods


@dataclass(frozen=True)
class TrialPayload:
    """One object in Ray's object store, handed to every trial of the study."""

    context: TrialContext
    inputs: TrialInputs


def embeddings_of(study) -> tuple[str, ...]:
    """The embedding spaces the study's refiners can ask for. No study searches ``embedding``, so
    it is RefineConfig's default; that LeNet is ~0.4 MB, shipped to every refining study rather
    than reading each space's method list."""
    from refinement import RefineConfig

    return (RefineConfig().embedding,) if study.refines else ()


def build_inputs(*, dataset: str, study, budget, data_root, download: bool) -> TrialInputs:
    """Read the data, prepare the evaluator and the embedders on this (the driver's) node.

    Raises ``gan_models.DataNotFoundError`` (one line) when the data is absent and cannot be
    downloaded, ``evaluation.WeightsError`` when the dataset has no evaluator yet.
    """
    from evaluation import Evaluator, feature_extractor
    from gan_models import load_images

    images = load_images(dataset, split="train", data_root=data_root, download=download).images
    if budget.n_real_intermediate != budget.n_real_final:
        raise ValueError(f"budget {budget.name}: intermediate and final scores must use the same real set")
    evaluator = Evaluator(dataset=dataset, n_real=budget.n_real_final, data_root=data_root, device="cpu")
    evaluator.prepare()  # computed here, or read from this node's evaluation cache
    embedders = {name: feature_extractor(name, dataset=dataset, device="cpu") for name in embeddings_of(study)}
    return TrialInputs(train_images=images, evaluator=evaluator, embedders=embedders)
