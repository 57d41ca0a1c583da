"""What the search finds: the floor, the course default, every recipe and the best of a default study, at equal
training images, with and without refinement, in one run.

- **floor**: 10,000 MNIST training images scored as if generated, against the 10,000 test images: the best
  any generator can do in this feature space.
- **recipes** (search.recipes, the course default among them): each trained by the project's Trainer on the
  budget's images (batch x n_critic per step), scored on 10,000 samples at image marks (a ninth and a third of
  the budget, 1M, the budget), from G's own weights (``raw``) and from its weight average (``ema``); at the
  end its average refined with the recipes' refinement (latent DOT, 5 steps), the trajectory scored.
- **study**: the README's main command, ``python -m search.run --study dot_latent``, exactly as a user runs it
  (its wall time, its estimate line, its best trial: FID before and after refinement); its best configuration
  is retrained like a recipe unless it is one, so every figure compares at equal images.

Goals (issue 19): the main command finishes in at most 60 minutes here; its best trial, refined, scores FID
<= 30 with recall >= 0.6; the best configuration at 1M images is >= 5x better in FID than the course default
at 1M images; refinement improves the best trial's FID (the JSON says by how much).

    python -m benchmarks.quality --out benchmarks/results/quality.json        # about 2 h on 2 CPU cores
    python -m benchmarks.quality --study-dir DIR                               # DIR/runs: a finished study is read

Runs ``--parallel`` trainings at a time (default 2), one thread each. Sample grids (64 samples of each run's
average) go beside the JSON, in ``<out stem>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_json

STUDY = "dot_latent"
MAIN_COMMAND = ["python", "-m", "search.run", "--study", STUDY]
GOAL_MINUTES, GOAL_FID, GOAL_RECALL, GOAL_RATIO_AT_1M = 60.0, 30.0, 0.6, 5.0
MILLION = 1_000_000
REFINE_SCORE_STEPS = (0, 1, 2, 5)


def marks_for(images: int) -> list[int]:
    """Where each run is scored: the successive-halving rungs (a ninth, a third), 1M images, the budget."""
    return sorted({images // 9, images // 3, min(MILLION, images), images})


# --- one training run, in a worker process ----------------------------------------------------------------------


def train_and_score(name: str, params: dict[str, Any], *, images: int, seed: int, data_root: str | None,
                    grids: str, refine: dict[str, Any]) -> dict[str, Any]:
    """Train ``params`` on ``images`` images; 10,000-sample scores at each mark (raw G and its average), a grid
    and the refined trajectory of the sampling generator at the end."""
    import torch

    from evaluation import Evaluator
    from gan_models import TrainConfig, Trainer, load_images
    from gan_models.images import save_grid

    torch.set_num_threads(1)
    train = load_images("mnist", split="train", data_root=data_root).images
    evaluator = Evaluator(dataset="mnist", n_real=10_000, data_root=data_root)
    config = TrainConfig.from_dict({**{k: v for k, v in params.items() if not k.startswith("refine_")},
                                    "seed": seed, "steps": 10**9})
    trainer, rows, train_s = Trainer(config, train), [], 0.0
    for mark in marks_for(images):
        began = time.perf_counter()
        while trainer.step * config.images_per_step < mark:
            trainer.train_step()
            if trainer.step % 100 == 0:
                trainer.sync()
        trainer.sync()
        train_s += time.perf_counter() - began
        row = {"images": trainer.step * config.images_per_step, "steps": trainer.step, "train_s": round(train_s, 1)}
        for which, raw in (("raw", True), ("ema", False)) if trainer.G_ema is not None else (("raw", True),):
            row[which] = _scores(evaluator.score(trainer.sample(10_000, seed=seed, raw=raw)))
        rows.append(row)
    grid = save_grid(trainer.sample(64, seed=seed), Path(grids) / f"{name}.png")
    return {"name": name, "params": params, "images_per_s": rows[-1]["images"] / train_s, "marks": rows,
            "grid": str(grid), "refined": _refined(trainer, refine, evaluator, seed)}


def _scores(s: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(s[k]), 4) for k in ("fid", "precision", "recall", "density", "coverage", "class_coverage")}


def _refined(trainer, refine: dict[str, Any], evaluator, seed: int) -> list[dict[str, Any]]:
    """The trajectory of the sampling generator refined as the recipes refine (10,000 samples)."""
    from refinement import RefineConfig
    from refinement import refine as run_refine

    config = RefineConfig.from_dict({k[len("refine_"):]: v for k, v in refine.items()})
    result = run_refine(trainer.generator.eval(), trainer.D.eval(), config, latent_dim=trainer.config.latent_dim,
                        latent_prior=trainer.config.latent_prior, n=10_000, seed=seed, evaluator=evaluator,
                        score_steps=REFINE_SCORE_STEPS)
    return [{"step": int(r["step"]), **_scores(r)} for r in result.trajectory.to_dict("records")]


# --- the floor and the study --------------------------------------------------------------------------------------


def floor(data_root: str | None) -> dict[str, float]:
    """10,000 training images against the 10,000 test images: what a perfect generator scores here."""
    import torch

    from evaluation import Evaluator
    from gan_models import load_images, to_float

    images = load_images("mnist", split="train", data_root=data_root).images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))[:10_000]
    return _scores(Evaluator(dataset="mnist", n_real=10_000, data_root=data_root).score(to_float(images[idx])))


def run_study(study_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The README's main command in ``study_dir`` (a finished study there is read instead), timed."""
    storage = f"sqlite:///{study_dir / 'runs' / 'optuna.db'}"
    log = study_dir / "main-command.log"
    if not _finished(storage):
        study_dir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.run([sys.executable, *MAIN_COMMAND[1:]], cwd=study_dir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
        (study_dir / "main-command.json").write_text(json.dumps({"wall_s": time.perf_counter() - began,
                                                                  "exit": proc.returncode}))
    timing = json.loads((study_dir / "main-command.json").read_text())
    text = log.read_text() if log.exists() else ""
    return {"command": " ".join(MAIN_COMMAND), "wall_s": timing["wall_s"], "exit": timing["exit"],
            "estimate_line": next((ln for ln in text.splitlines() if ln.startswith("estimate:")), None),
            **_best_of(storage)}


def _finished(storage: str) -> bool:
    import optuna

    from search.urls import sqlite_path

    if not sqlite_path(storage).exists() or STUDY not in optuna.get_all_study_names(storage):
        return False
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return study.user_attrs.get("search_settings", {}).get("trials", 0) <= sum(
        t.state.name in ("COMPLETE", "PRUNED", "FAIL") and not t.user_attrs.get("interrupted") for t in study.trials)


def _best_of(storage: str) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    keys = ("fid", "fid_before", "precision", "precision_before", "recall", "recall_before", "coverage",
            "class_coverage", "best_step", "train_images")
    return {"trials": len(trials), "settings": study.user_attrs["search_settings"],
            "states": {s.name: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                           TrialState.FAIL)},
            "images_spent": sum(int(t.user_attrs.get("train_images", 0)) for t in trials),
            "best": {"number": best.number, "params": best.params, "enqueued": best.user_attrs.get("enqueued"),
                     **{k: best.user_attrs.get(k) for k in keys}}}


# --- the whole benchmark ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="small", help="the budget whose images every run trains on (default small)")
    p.add_argument("--study-dir", help="the main command's folder (DIR/runs); a finished study there is read "
                                       "(default: a new folder beside --out)")
    p.add_argument("--skip-study", action="store_true", help="the recipes and the floor only")
    p.add_argument("--parallel", type=int, default=2, help="trainings at a time, one thread each (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="MNIST folder; default $GAN_DATA_ROOT")
    p.add_argument("--out", default="benchmarks/results/quality.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search.budgets import get_budget
    from search.recipes import RECIPES, REFINE_RECIPES

    budget = get_budget(args.budget)
    out = Path(args.out).resolve()
    grids = out.parent / out.stem
    grids.mkdir(parents=True, exist_ok=True)
    data_root = str(Path(args.data_root).resolve()) if args.data_root else os.environ.get("GAN_DATA_ROOT")
    env = {**os.environ, **({"GAN_DATA_ROOT": data_root} if data_root else {})}
    study = None if args.skip_study else run_study(Path(args.study_dir or grids / "study").resolve(), env)
    jobs = {name: dict(r.params) for name, r in RECIPES.items()}
    if study is not None and not (study["best"]["enqueued"] or "").startswith("recipe "):
        jobs["study-best"] = {k: v for k, v in study["best"]["params"].items() if not k.startswith("refine_")}
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        futures = {name: pool.submit(train_and_score, name, params, images=budget.images, seed=args.seed,
                                     data_root=data_root, grids=str(grids), refine=REFINE_RECIPES["latent"])
                   for name, params in jobs.items()}
        runs = {name: f.result() for name, f in futures.items()}
    result = {"benchmark": "quality", "budget": budget.name, "images": budget.images, "marks": marks_for(budget.images),
              "floor": floor(data_root), "runs": runs, "study": study, "machine": machine()}
    result["goals"] = goals(result)
    write_json(result, out, echo=False)
    print(json.dumps(result["goals"], indent=2))
    return 0


def _at(run: dict[str, Any], images: int) -> dict[str, float]:
    """A run's sampling-generator scores at the mark nearest ``images``."""
    row = min(run["marks"], key=lambda r: abs(r["images"] - images))
    return row.get("ema", row["raw"])


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, each with the figures it was judged on."""
    runs, study = result["runs"], result["study"]
    best_1m = min(runs, key=lambda n: _at(runs[n], MILLION)["fid"])
    ratio = _at(runs["course"], MILLION)["fid"] / _at(runs[best_1m], MILLION)["fid"]
    out: dict[str, Any] = {"best_at_1M": {"run": best_1m, "fid": _at(runs[best_1m], MILLION)["fid"],
                                          "course_fid": _at(runs["course"], MILLION)["fid"], "ratio": ratio,
                                          "met": ratio >= GOAL_RATIO_AT_1M}}
    if study is not None:
        best = study["best"]
        out["main_command"] = {"minutes": study["wall_s"] / 60, "met": study["wall_s"] / 60 <= GOAL_MINUTES,
                               "exit": study["exit"]}
        out["best_trial_refined"] = {"fid": best["fid"], "recall": best["recall"],
                                     "met": best["fid"] <= GOAL_FID and best["recall"] >= GOAL_RECALL}
        gain = best["fid_before"] - best["fid"]
        out["refinement_gain"] = {"fid_before": best["fid_before"], "fid_after": best["fid"], "gain": gain,
                                  "relative": gain / best["fid_before"] if best["fid_before"] else math.nan,
                                  "met": gain > 0}
    return out


if __name__ == "__main__":
    sys.exit(main())
