"""Every CLI's --help: it exits 0, lists the choices of every choice flag, imports none of the heavy
libraries (torch, Optuna, Ray, MLflow: checked with ``-X importtime``, never with a clock), and the
console scripts name themselves as invoked. Also the contracts behind that: the light name lists the
help is built from equal the registries they copy, and the packages' lazy ``__init__`` still gives
every public name."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "optuna", "ray", "mlflow", "pandas")
PACKAGES = ("gan_models", "evaluation", "refinement", "search")


def _choices() -> dict[str, dict[str, tuple[str, ...]]]:
    """CLI module -> choice flag -> its valid values, read from the real (heavy) registries."""
    from evaluation.classifier import ROLES
    from evaluation.evaluator import METRIC_GROUPS, SCORING_SPACES
    from evaluation.features import FEATURE_SPACES
    from gan_models.data import DATASETS, SPLITS
    from gan_models.losses import LOSSES, SAN_BASES
    from gan_models.networks import ARCHITECTURES, LATENT_PRIORS
    from refinement.config import K_EFF_CHOICES, METHODS, NORMS, OPTIMIZERS, PROJECTIONS
    from search.budgets import BUDGETS
    from search.samplers import PRUNERS, SAMPLERS
    from search.studies import STUDIES

    return {
        "gan_models.train": {"--dataset": DATASETS, "--architecture": ARCHITECTURES,
                             "--latent-prior": LATENT_PRIORS, "--loss": LOSSES, "--san-base": SAN_BASES},
        "evaluation.score": {"--split": SPLITS, "--features": SCORING_SPACES, "--metrics": METRIC_GROUPS},
        "evaluation.train_classifier": {"--dataset": DATASETS, "--roles": ROLES},
        "refinement.run": {"--method": METHODS, "--optimizer": OPTIMIZERS, "--norm": NORMS, "--k-eff": K_EFF_CHOICES,
                           "--projection": PROJECTIONS, "--embedding": FEATURE_SPACES, "--features": SCORING_SPACES,
                           "--metrics": METRIC_GROUPS},
        "search.run": {"--study": STUDIES, "--budget": BUDGETS, "--dataset": DATASETS, "--sampler": SAMPLERS,
                       "--pruner": PRUNERS},
    }


CLIS = ("gan_models.train", "evaluation.score", "evaluation.train_classifier", "refinement.run", "search.run")


def _env() -> dict[str, str]:
    # a wide terminal: argparse wraps help at hyphens ("classifier-\nalt"), which would split names
    return {**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(REPO)}


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level packages named in ``python -X importtime`` output ("import time: self | cum | name")."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def _option_help(help_text: str, flag: str) -> str:
    """The help entry of ``flag``: its line and the lines argparse indents under it (the help text goes
    there when the option string is long), e.g. '--optimizer OPTIMIZER default adam; one of sgd, adam'."""
    lines = help_text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(rf"  {re.escape(flag)}\b(?!-)", line)]
    assert len(starts) == 1, f"{flag}: {starts}"
    entry = [lines[starts[0]]]
    for line in lines[starts[0] + 1:]:
        if not line.startswith("      "):  # the next option, or the end of the section
            break
        entry.append(line)
    return " ".join(line.strip() for line in entry)


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s,|;:{}()]+", text))


@pytest.mark.parametrize("module", CLIS)
def test_help_lists_every_choice_and_imports_nothing_heavy(module):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m {module} ")
    heavy = sorted(set(HEAVY) & _imported(proc.stderr))
    assert not heavy, f"python -m {module} --help imported {heavy}"
    for flag, choices in _choices()[module].items():
        line = _option_help(proc.stdout, flag)
        missing = [c for c in choices if c not in _tokens(line)]
        assert not missing, f"{module} --help, {flag}: {missing} not listed in {line.strip()!r}"


def _console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_console_scripts_name_themselves(script, tmp_path):
    """What pip's generated script does (argv[0] = its path, then the entry point), run for --help."""
    module, func = _console_scripts()[script].split(":")
    code = (f"import sys; sys.argv = [{str(tmp_path / 'bin' / script)!r}, '--help']\n"
            f"from {module} import {func}\n"
            f"try:\n    {func}()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            f"assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script} ")


def test_errors_name_the_program_as_invoked(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'gan-train'; "
                                                 "from gan_models.train import main; main([])"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: the following arguments are required: --out (see gan-train --help)"]


# --- the light name lists behind --help equal the registries they copy ---------------------------------


def test_light_name_lists_equal_the_registries():
    import evaluation.score as score_cli
    from evaluation.cache import CACHE_ENV
    from evaluation.classifier import EVALUATOR_DIR_ENV, ROLES
    from evaluation.evaluator import METRIC_GROUPS, SCORING_SPACES
    from evaluation.features import FEATURE_SPACES
    from gan_models import config
    from gan_models.data import DATASETS
    from gan_models.losses import LOSSES, SAN_BASES
    from gan_models.networks import ARCHITECTURES, LATENT_PRIORS

    assert config.DATASET_NAMES == tuple(DATASETS)
    assert config.LOSS_NAMES == tuple(LOSSES)
    assert config.SAN_BASE_NAMES == tuple(SAN_BASES)
    assert config.ARCHITECTURE_NAMES == tuple(ARCHITECTURES)
    assert config.LATENT_PRIOR_NAMES == tuple(LATENT_PRIORS)
    assert score_cli.SCORING_SPACE_NAMES == tuple(SCORING_SPACES)
    assert score_cli.FEATURE_SPACE_NAMES == tuple(FEATURE_SPACES)
    assert score_cli.METRIC_GROUP_NAMES == tuple(METRIC_GROUPS)
    assert score_cli.ROLE_NAMES == tuple(ROLES)
    assert score_cli.CACHE_ENV_NAME == CACHE_ENV
    assert score_cli.EVALUATOR_DIR_ENV_NAME == EVALUATOR_DIR_ENV


def test_dataset_registry_is_light_but_gives_the_torchvision_classes():
    from torchvision import datasets

    from gan_models.data import DATASETS

    assert list(DATASETS) == ["mnist", "fashion-mnist", "kmnist"]
    assert DATASETS["mnist"] is datasets.MNIST and DATASETS["fashion-mnist"] is datasets.FashionMNIST
    assert DATASETS["kmnist"] is datasets.KMNIST and "cifar10" not in DATASETS


# --- the lazy packages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_package_gives_every_public_name(package):
    pkg = importlib.import_module(package)
    assert set(pkg.__all__) == set(pkg._EXPORTS) and len(pkg.__all__) == len(set(pkg.__all__))
    for name in pkg.__all__:
        module, _, attr = pkg._EXPORTS[name].partition(":")
        value = getattr(pkg, name)
        if (package, name) == ("evaluation", "score") and value is sys.modules.get("evaluation.score"):
            continue  # the CLI module, once imported, stands for the function (and is callable as it)
        assert value is getattr(importlib.import_module(f"{package}.{module}"), attr or name), name
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no_such_name"):
        pkg.no_such_name  # noqa: B018


def test_from_imports_work_in_a_fresh_process_without_loading_torch_first():
    code = ("import sys\n"
            "import gan_models, evaluation, refinement, search\n"
            "assert 'torch' not in sys.modules and 'optuna' not in sys.modules\n"
            "from gan_models import load_images, TrainConfig, DATASETS\n"
            "from evaluation import score, Evaluator\n"
            "from refinement import PROJECTION_RULES, PROJECTIONS, refine\n"
            "from search import STUDIES, make_sampler\n"
            "assert callable(score) and score.__module__ == 'evaluation.evaluator'\n"
            "assert set(PROJECTION_RULES) == set(PROJECTIONS) and 'gan' in STUDIES\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
