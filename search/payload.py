"""Everything a trial needs besides its params, built once by the driver and shipped through Ray.

On a cluster the nodes share no disk, so a trial must never open a path: the driver reads the
dataset split (one uint8 tensor, 47 MB for MNIST's train split), builds the evaluator with its real
statistics already computed (its classifier weights and cached features travel inside it), builds
the embedding networks the study's refiners may use, and hands all of it to every trial through
Ray's object store (``tune.with_parameters`` puts it there once; each node fetches it once), with the
study's plan (search.settings), so no trial looks a name up again.
``--data-root`` / ``GAN_DATA_ROOT`` and the evaluation cache are read by the driver only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SearchError, one_line
from .settings import StudyPlan
from .tracking import StudyRun

if TYPE_CHECKING:
    from torch import Tensor, nn

    from evaluation import Evaluator


@dataclass(frozen=True)
class TrialContext:
    """The study-wide settings of a trial: the same for every trial of a study."""

    plan: StudyPlan
    study_run: StudyRun
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # a fraction shares a GPU with other trials

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


def embeddings_of(plan: StudyPlan) -> tuple[str, ...]:
    """The embedding spaces the study's refiners can ask for. No study searches ``embedding``, so
    it is RefineConfig's default; that LeNet is ~0.4 MB, shipped to every refining study rather
    than reading each space's method list."""
    from refinement import RefineConfig

    return (RefineConfig().embedding,) if plan.study.refines else ()


def load_inputs(plan: StudyPlan, *, data_root: str | None, download: bool) -> TrialInputs:
    """Read the data, prepare the evaluator and the embedders on this (the driver's) node; the data is
    downloaded when absent, unless ``download`` is False (a failed download takes back the folders it
    made). Raises SearchError in one line when the data is absent or the dataset has no evaluator."""
    from evaluation import Evaluator, feature_extractor
    from evaluation.classifier import WeightsError
    from gan_models import DataNotFoundError, load_images
    from gan_models.data import resolve_data_root

    dataset, budget = plan.settings.dataset, plan.budget
    root = resolve_data_root(data_root)
    try:
        images = load_images(dataset, split="train", data_root=root, download=download).images
        evaluator = Evaluator(dataset=dataset, n_real=budget.n_real, data_root=root, device="cpu")
        evaluator.prepare()  # computed here, or read from this node's evaluation cache
        embedders = {name: feature_extractor(name, dataset=dataset, device="cpu") for name in embeddings_of(plan)}
    except (DataNotFoundError, WeightsError) as exc:
        suffix = " (--no-download)" if isinstance(exc, DataNotFoundError) and not download else ""
        raise SearchError(one_line(exc) + suffix) from None
    return TrialInputs(train_images=images, evaluator=evaluator, embedders=embedders)
