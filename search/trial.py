"""One trial: train with intermediate FID reports and checkpoints, then refine and score.

``run_trial`` holds the whole trial and knows nothing of Ray: it talks to a ``Reporter``. Under
Ray Tune the reporter is ``RayReporter`` (``ray.tune.report`` with a ``ray.tune.Checkpoint``,
resuming from ``ray.tune.get_checkpoint()`` after a worker restart); ``LocalReporter`` runs the
identical trial in-process (the tune-overhead benchmark's baseline).

Reports carry ``phase``: "train" every K steps (``fid_intermediate``, the pruner's input, with a
checkpoint), then one "final" (the objective metrics) or one "failed" (a diverged run, with its
reason). The Optuna state is decided by the driver from these reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

import torch

from gan_models import DivergenceError, load_images, save_checkpoint, train_gan
from gan_models.config import known_fields
from gan_models.images import save_grid

from .budgets import Budget, get_budget
from .studies import check_params, get_study, refine_config, train_config
from .tracking import StudyRun, TrialRun

CHECKPOINT_FILE = "checkpoint.pt"
META_FILE = "meta.json"
GRID_SIZE = 64
# Final metrics copied from the evaluator / the trajectory into the trial's result
FINAL_KEYS = ("fid", "precision", "recall", "density", "coverage", "class_coverage", "class_kl")


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its params; the same for every trial of a study."""

    study: str  # registry name
    study_name: str  # the Optuna study / MLflow experiment name
    budget: str
    seed: int
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    data_root: str | None = None
    dataset: str = "mnist"
    cpus_per_trial: float = 1.0
    use_gpu: bool = False
    eval_cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrialContext":
        return cls(**known_fields(cls, values, what="trial context", error=ValueError))

    @property
    def study_run(self) -> StudyRun:
        return StudyRun(self.tracking_uri, self.experiment_id, self.parent_run_id)


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...

    def restore(self, checkpoint_path: Path) -> int:
        """Copy the latest checkpoint (if any) to ``checkpoint_path``; return its step (0: none)."""
        ...


class RayReporter:
    """Reports through Ray Tune; checkpoints go to the run's storage_path, whichever the node."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        tune.report(metrics, checkpoint=checkpoint)

    def restore(self, checkpoint_path: Path) -> int:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return 0
        with checkpoint.as_directory() as folder:
            shutil.copyfile(Path(folder) / CHECKPOINT_FILE, checkpoint_path)
            return int(json.loads((Path(folder) / META_FILE).read_text())["step"])


class LocalReporter:
    """Keeps the reports in a list; checkpoints stay in the trial's working folder."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))

    def restore(self, checkpoint_path: Path) -> int:
        return 0


def _device(ctx: TrialContext) -> str:
    return "cuda" if ctx.use_gpu and torch.cuda.is_available() else "cpu"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def run_trial(ctx: TrialContext, params: Mapping[str, Any], trial_number: int, reporter: Reporter) -> dict[str, Any]:
    """Train, report intermediate FID every K steps with a checkpoint, then refine and score.

    Returns the last report. A diverged run (NaN/inf loss or samples) ends with a "failed" report
    carrying its reason; any other error propagates (Ray retries the trial from its checkpoint).
    """
    from evaluation import Evaluator

    get_study(ctx.study)
    budget = get_budget(ctx.budget)
    check_params(params)
    device = _device(ctx)
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    train_cfg = train_config(params, budget=budget, seed=ctx.seed, dataset=ctx.dataset)
    refine_cfg = refine_config(params)

    run = TrialRun.open(ctx.study_run, study_name=ctx.study_name, trial_number=trial_number, params=params,
                        tags={"study": ctx.study, "budget": budget.name, "seed": ctx.seed})
    workdir = Path(tempfile.mkdtemp(prefix=f"trial-{trial_number:04d}-"))
    try:
        ckpt_path = workdir / CHECKPOINT_FILE
        resumed_from = reporter.restore(ckpt_path)
        if resumed_from:
            run.set_tags({"resumed_from_step": resumed_from})
        common = {"optuna_trial": trial_number, "mlflow_run_id": run.run_id, "resumed_from_step": resumed_from}
        images = load_images(ctx.dataset, split="train", data_root=ctx.data_root).images
        small = Evaluator(dataset=ctx.dataset, n_real=budget.n_real_intermediate, metrics=("fid",),
                          data_root=ctx.data_root, cache_dir=ctx.eval_cache_dir, device=device)
        logged = {"step": resumed_from}

        def on_eval(trainer) -> None:
            samples = trainer.sample(budget.n_intermediate, seed=ctx.seed)
            if not torch.isfinite(samples).all():
                raise DivergenceError(trainer.step, "generated samples", math.nan)
            fid = float(small.score(samples)["fid"])
            h = trainer.history
            new = [i for i, s in enumerate(h["step"]) if s > logged["step"]]
            run.log_series([("loss_d", h["loss_d"][i], h["step"][i]) for i in new]
                           + [("loss_g", h["loss_g"][i], h["step"][i]) for i in new]
                           + [("fid_intermediate", fid, trainer.step)])
            grid = save_grid(samples[:GRID_SIZE], workdir / "grids" / f"step_{trainer.step:06d}.png")
            run.log_artifact(grid, "samples")
            logged["step"] = trainer.step
            report_dir = workdir / "report"
            trainer.save(report_dir / CHECKPOINT_FILE)
            (report_dir / META_FILE).write_text(json.dumps({"step": trainer.step, "mlflow_run_id": run.run_id}))
            reporter.report({"phase": "train", "step": trainer.step, "fid_intermediate": fid,
                             "loss_d": _mean([h["loss_d"][i] for i in new]),
                             "loss_g": _mean([h["loss_g"][i] for i in new]), **common}, report_dir)

        try:
            result = train_gan(train_cfg, images_u8=images, checkpoint_path=ckpt_path, resume=resumed_from > 0,
                               callback=on_eval, callback_every=budget.eval_every, progress=False, device=device)
        except DivergenceError as exc:
            reason = str(exc)
            run.set_tags({"fail_reason": reason})
            out = {"phase": "failed", "fail_reason": reason, "step": exc.step, **common}
            reporter.report(out, None)
            return out

        trainer = result.trainer
        final = _score_final(ctx, budget, trainer, refine_cfg, run, workdir, device)
        models = save_checkpoint(workdir / "models.pt", {
            "config": train_cfg.to_dict(), "step": trainer.step, "history": trainer.history,
            "generator": trainer.G.state_dict(), "discriminator": trainer.D.state_dict()})
        run.log_artifact(models, "checkpoint")
        run.log_metrics({k: v for k, v in final.items() if k != "step"})
        run.set_tags({"evaluator_sha256": final["evaluator_sha256"], "evaluator": final["evaluator"]})
        out = {"phase": "final", **final, "train_steps": trainer.step, **common}
        reporter.report(out, None)
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _score_final(ctx: TrialContext, budget: Budget, trainer, refine_cfg, run: TrialRun, workdir: Path,
                 device: str) -> dict[str, Any]:
    """Final scores at the budget's sample size: the trajectory's last row after refinement (the
    objective), its step-0 row as ``*_before``; a study without refinement scores G's samples."""
    from evaluation import Evaluator

    evaluator = Evaluator(dataset=ctx.dataset, n_real=budget.n_real_final, data_root=ctx.data_root,
                          cache_dir=ctx.eval_cache_dir, device=device)
    G, D = trainer.G.eval(), trainer.D.eval()
    if refine_cfg is None:
        scores = evaluator.score(trainer.sample(budget.n_final, seed=ctx.seed))
        before, after, best_step, k_eff = scores, scores, 0, math.nan
        grid = save_grid(trainer.sample(GRID_SIZE, seed=ctx.seed), workdir / "final_samples.png")
        run.log_artifact(grid, "samples")
    else:
        from refinement import refine, save_result

        result = refine(G, D, refine_cfg, latent_dim=trainer.config.latent_dim, latent_prior=trainer.config.latent_prior,
                        n=budget.n_final, seed=ctx.seed, evaluator=evaluator,
                        score_steps=budget.refine_score_steps(refine_cfg.steps), batch_size=budget.refine_batch_size,
                        device=device, dataset=ctx.dataset)
        traj = result.trajectory
        before = traj.loc[traj["step"] == 0].iloc[0].to_dict()
        after = traj.loc[traj["step"] == refine_cfg.steps].iloc[0].to_dict()
        best_step, k_eff = result.best_step, float(result.k_eff)
        paths = save_result(result, workdir / "refinement")
        for name, path in paths.items():
            if name != "samples":  # the refined images are reproducible from the checkpoint and seed
                run.log_artifact(path, "refinement")
        run.log_series([(f"refine_{k}", float(row[k]), int(row["step"])) for row in traj.to_dict("records")
                        for k in FINAL_KEYS if k in row])
    out: dict[str, Any] = {k: float(after[k]) for k in FINAL_KEYS}
    out.update({f"{k}_before": float(before[k]) for k in ("fid", "precision", "recall")})
    out.update(best_step=int(best_step), k_eff=k_eff, n_final=int(after["n_fake"]),
               evaluator=str(after["evaluator"]), evaluator_sha256=str(after["evaluator_sha256"]))
    return out


def ray_trainable(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: config = {"context": ..., "params": ..., "optuna_trial": n}."""
    run_trial(TrialContext.from_dict(config["context"]), config["params"], int(config["optuna_trial"]), RayReporter())
