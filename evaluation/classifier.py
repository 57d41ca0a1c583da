"""The MNIST-family classifiers: a small LeNet, its weights files and their manifests.

Scores are only comparable when the feature space is fixed, so the evaluator's weights live in a
folder beside ``manifest.json``, which records each file's sha256. Two folders are searched, in
order: the package's shipped weights (``evaluation/weights/``: MNIST), then the user's evaluator
folder (``evaluator_dir=`` / the CLIs' ``--evaluator-dir``, else ``$GAN_EVALUATOR_DIR``, else
``~/.cache/gan-refine-search/evaluators``), where ``python -m evaluation.train_classifier``
writes the evaluators of the other datasets. The first folder whose manifest records the wanted
model wins. Loading always re-hashes the file and refuses one that does not match its manifest:
a score computed with other weights must not be reported under the evaluator's name.

Two roles per dataset: ``classifier`` (seed 0) scores samples; ``classifier-alt`` (seed 1) is
the embedding for embedded DOT, so refinement never optimises in the space that scores it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from gan_models.registry import check_choice

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # shipped with the package
EVALUATOR_DIR_ENV = "GAN_EVALUATOR_DIR"
DEFAULT_EVALUATOR_DIR = Path.home() / ".cache" / "gan-refine-search" / "evaluators"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gan-refine-search/evaluators/v1"
ROLES = {"classifier": 0, "classifier-alt": 1}  # role -> training seed
NUM_CLASSES = 10
PENULTIMATE_DIM = 128


class WeightsError(ValueError, FileNotFoundError):
    """A weights file is missing, not in the manifest, or does not match its recorded sha256."""


class LeNet(nn.Module):
    """conv5x5(16)-pool-conv5x5(32)-pool-fc(128)-fc(10) on images [B, 1, 28, 28] in [-1, 1].

    Small on purpose: the evaluator runs on every intermediate FID of every trial, on CPU.
    No batch norm, so train/eval modes differ only by the dropout before the last layer.
    """

    def __init__(self) -> None:
        super().__init__()
        # Pool before ReLU: max and ReLU commute exactly, and ReLU then touches 4x fewer values.
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),  # [B, 16, 14, 14]
            nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(),  # [B, 32, 5, 5]
            nn.Flatten(),  # [B, 800]
        )
        self.fc = nn.Sequential(nn.Linear(800, PENULTIMATE_DIM), nn.ReLU())
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(PENULTIMATE_DIM, NUM_CLASSES)

    def penultimate(self, x: Tensor) -> Tensor:
        """[B, 1, 28, 28] -> [B, 128] (after ReLU)."""
        return self.fc(self.conv(x))

    def penultimate_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.penultimate(x)
        return h, self.head(self.dropout(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.penultimate_and_logits(x)[1]


@dataclass(frozen=True)
class ClassifierInfo:
    """What identifies a classifier in every score: its name, its file and the file's sha256."""

    name: str
    dataset: str
    role: str
    path: Path
    sha256: str


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so repeated loads do not re-read it."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def check_role(role: str) -> None:
    check_choice("classifier role", role, ROLES)


def weights_filename(dataset: str, role: str) -> str:
    return f"{dataset}-{role}.pt"


def manifest_key(dataset: str, role: str) -> str:
    return f"{dataset}/{role}"


def classifier_name(dataset: str, role: str) -> str:
    return f"{dataset}-lenet-seed{ROLES[role]}"


def read_manifest(weights_dir: str | os.PathLike | None = None) -> dict:
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"weights manifest {path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("models"), dict):
        raise WeightsError(f"{path} is not a weights manifest (expected format {MANIFEST_FORMAT!r})")
    return manifest


def resolve_evaluator_dir(evaluator_dir: str | os.PathLike | None = None) -> Path:
    """The explicit folder, else ``$GAN_EVALUATOR_DIR``, else the per-user evaluator folder."""
    if evaluator_dir is not None and str(evaluator_dir) != "":
        return Path(evaluator_dir).expanduser()
    env = os.environ.get(EVALUATOR_DIR_ENV, "")
    return Path(env).expanduser() if env else DEFAULT_EVALUATOR_DIR


def search_folders(evaluator_dir: str | os.PathLike | None = None) -> tuple[Path, ...]:
    """Where a classifier is looked for, in order: the shipped weights, then the evaluator folder."""
    user = resolve_evaluator_dir(evaluator_dir)
    return (WEIGHTS_DIR,) if user.resolve() == WEIGHTS_DIR else (WEIGHTS_DIR, user)


def _how_to_create(dataset: str, folder: str | os.PathLike | None = None) -> str:
    where = f" --evaluator-dir {folder}" if folder is not None else ""
    return f"create it with `python -m evaluation.train_classifier --dataset {dataset}{where}`"


def resolve_classifier(
    dataset: str = "mnist",
    role: str = "classifier",
    *,
    weights: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    evaluator_dir: str | os.PathLike | None = None,
) -> ClassifierInfo:
    """Find a classifier's weights file and check it against its manifest's sha256.

    ``weights`` names a file explicitly (no manifest check; its own hash identifies it);
    ``weights_dir`` names the one folder to use; otherwise the shipped weights are searched first,
    then the evaluator folder (``evaluator_dir``, else ``$GAN_EVALUATOR_DIR``, else the default).
    """
    check_role(role)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"classifier weights file not found: {path}")
        return ClassifierInfo(name=f"{classifier_name(dataset, role)}@{path.name}", dataset=dataset,
                              role=role, path=path, sha256=file_sha256(path))
    folders = (Path(weights_dir).expanduser(),) if weights_dir is not None else search_folders(evaluator_dir)
    hint = weights_dir if weights_dir is not None else evaluator_dir
    key = manifest_key(dataset, role)
    unrecorded = None
    for folder in folders:
        entry = read_manifest(folder)["models"].get(key)
        path = folder / weights_filename(dataset, role)
        if entry is None:
            unrecorded = unrecorded or (path if path.is_file() else None)
            continue
        return _verified(path, entry, dataset=dataset, role=role, hint=hint)
    if unrecorded is not None:
        raise WeightsError(f"{unrecorded} is not recorded in {unrecorded.parent / MANIFEST_NAME}; "
                           f"{_how_to_create(dataset, unrecorded.parent)} --force")
    path = folders[-1] / weights_filename(dataset, role)
    shipped = " (and not shipped with the package)" if len(folders) > 1 else ""
    raise WeightsError(f"{role} weights for {dataset} not found: {path}{shipped}; {_how_to_create(dataset, hint)}")


def _verified(path: Path, entry: object, *, dataset: str, role: str, hint: str | os.PathLike | None) -> ClassifierInfo:
    """The manifest entry's file, re-hashed and compared with the sha256 the manifest records."""
    manifest = path.parent / MANIFEST_NAME
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("name"), str)):
        raise WeightsError(f"{manifest}: entry {manifest_key(dataset, role)!r} is malformed "
                           f"(needs name and sha256); {_how_to_create(dataset, path.parent)} --force")
    if not path.is_file():
        raise WeightsError(f"{role} weights for {dataset} not found: {path} (recorded in {manifest}); "
                           f"{_how_to_create(dataset, hint)}")
    sha = file_sha256(path)
    if sha != entry["sha256"]:
        remedy = ("reinstall the package to restore the shipped file" if path.parent.resolve() == WEIGHTS_DIR
                  else f"{_how_to_create(dataset, path.parent)} --force")
        raise WeightsError(f"{path} does not match its recorded sha256 "
                           f"({sha[:12]}... != {entry['sha256'][:12]}...); {remedy}")
    return ClassifierInfo(name=entry["name"], dataset=dataset, role=role, path=path, sha256=sha)


def load_classifier(
    dataset: str = "mnist",
    role: str = "classifier",
    *,
    weights: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    evaluator_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> tuple[LeNet, ClassifierInfo]:
    """The classifier in eval mode with frozen parameters, and what identifies it (see ``resolve_classifier``)."""
    info = resolve_classifier(dataset, role, weights=weights, weights_dir=weights_dir, evaluator_dir=evaluator_dir)
    try:
        state = torch.load(info.path, map_location=device, weights_only=True)
        net = LeNet()
        net.load_state_dict(state)
    except Exception as exc:  # corrupt zip, pickle errors, wrong keys or shapes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"classifier weights {info.path} cannot be loaded: {first}") from None
    net = net.to(device).eval().requires_grad_(False)
    return net, info
