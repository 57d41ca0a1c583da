"""One trial: train with intermediate FID reports and checkpoints, then refine and score.

A trial trains on its budget's images (search.budgets), reports at the budget's image marks, and draws
every sample (intermediate FID, grids, refinement, final scores) from the sampling generator: the
weight average when its config keeps one (gan_models.ema), else G itself.

``run_trial`` holds the whole trial and knows nothing of Ray: it reads everything it needs from a
``TrialPayload`` (data, prepared evaluator, embedders, settings: no path on the node) and talks to
a ``Reporter``. Under Ray Tune the reporter is ``RayReporter`` (``ray.tune.report`` with a
``ray.tune.Checkpoint`` in the run's shared storage, resuming from ``ray.tune.get_checkpoint()``
after a worker restart); ``LocalReporter`` runs the identical trial in-process.

What a trial reports is typed (``messages.py``): ``TrainReport`` every K steps, then one
``FinalReport`` or one ``FailedReport``. An error that no retry can heal (divergence, bad data or
configuration, a bug) ends the trial at once with a FailedReport carrying its reason; only a lost
worker, which raises nothing here, is retried by Ray from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from gan_models import DivergenceError, TrainConfig, save_checkpoint, to_float, train_gan
from gan_models.images import save_grid
from refinement.config import RefineConfig

from .budgets import Budget
from .errors import is_disk_full
from .messages import BEFORE_METRICS, FINAL_METRICS, FailedReport, FinalReport, Report, TrainReport
from .payload import TrialContext, TrialPayload
from .studies import check_params, refine_config, train_config
from .tracking import TrialRun

CHECKPOINT_FILE = "checkpoint.pt"
META_FILE = "meta.json"
GRID_SIZE = 64


class Reporter(Protocol):
    def report(self, message: Report, checkpoint_dir: Path | None) -> None: ...

    def restore(self, checkpoint_path: Path) -> int:
        """Copy the latest checkpoint (if any) to ``checkpoint_path``; return its step (0: none)."""
        ...


class RayReporter:
    """Reports through Ray Tune; checkpoints go to the run's storage_path, whichever the node.

    ``resume_from``: the checkpoint URI of an earlier trial with the same params that a lost driver
    (or head) cut off; used when Ray has no checkpoint of this trial yet, so the rerun continues
    from where that one stopped instead of from step 0."""

    def __init__(self, resume_from: str | None = None) -> None:
        self.resume_from = resume_from

    def report(self, message: Report, checkpoint_dir: Path | None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        tune.report(message.to_result(), checkpoint=checkpoint)

    def restore(self, checkpoint_path: Path) -> int:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                shutil.copyfile(Path(folder) / CHECKPOINT_FILE, checkpoint_path)
                return int(json.loads((Path(folder) / META_FILE).read_text())["step"])
        if self.resume_from:
            return copy_checkpoint(self.resume_from, checkpoint_path)
        return 0


def copy_checkpoint(uri: str, checkpoint_path: Path) -> int:
    """Copy the newest complete checkpoint of the trial whose checkpoint folder is ``uri`` (s3://,
    gs://, file://) to ``checkpoint_path``; returns its step (0: none, the rerun starts afresh).

    The newest, not necessarily ``uri``: the driver records a trial's checkpoint as Ray registers it,
    one report behind, and Ray keeps only the latest (older ones are deleted); a head lost
    mid-upload can leave the newest folder incomplete, so the newest *complete* one is taken."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    parent = root.rsplit("/", 1)[0]
    siblings = [i.path for i in fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
                if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    for folder in sorted(set(siblings) | {root}, reverse=True):
        meta, model = fs.get_file_info([f"{folder}/{META_FILE}", f"{folder}/{CHECKPOINT_FILE}"])
        if meta.type != pafs.FileType.File or model.type != pafs.FileType.File:
            continue
        with fs.open_input_stream(meta.path) as f:
            step = int(json.loads(f.read().decode())["step"])
        with fs.open_input_stream(model.path) as src, open(checkpoint_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return step
    print(f"warning: no complete checkpoint at {uri}; the rerun starts from step 0", file=sys.stderr)
    return 0


class LocalReporter:
    """Keeps the reports in a list; checkpoints stay in the trial's working folder."""

    def __init__(self) -> None:
        self.reports: list[Report] = []

    def report(self, message: Report, checkpoint_dir: Path | None) -> None:
        self.reports.append(message)

    def restore(self, checkpoint_path: Path) -> int:
        return 0


def _device(ctx: TrialContext) -> str:
    """Ray shows a trial only the GPU it was given (CUDA_VISIBLE_DEVICES), so that one is "cuda".
    A node that declares GPUs torch cannot see (a logical --num-gpus) trains on its CPU: the
    trial's ``device`` tag says which."""
    return "cuda" if ctx.use_gpu and torch.cuda.is_available() else "cpu"


def gpu_identity() -> str:
    """``<node address>:<GPU id>`` of the GPU Ray gave this trial; "" outside Ray or without one."""
    try:
        import ray

        if not ray.is_initialized():
            return ""
        ids = ray.get_gpu_ids()
        return f"{ray.util.get_node_ip_address()}:{ids[0]}" if ids else ""
    except Exception:  # noqa: BLE001 - a placement label must never fail a trial
        return ""


def _device_tags(device: str) -> dict[str, str]:
    if device == "cuda":
        return {"device": f"cuda ({torch.cuda.get_device_name()})"}
    return {"device": device}


def _gpu_memory(device: str) -> dict[str, float]:
    """Peak GPU memory of this trial (allocated by tensors, and reserved by torch's caching allocator)."""
    if device != "cuda":
        return {}
    mib = 2.0**20
    return {"gpu_memory_peak_mib": torch.cuda.max_memory_allocated() / mib,
            "gpu_memory_reserved_peak_mib": torch.cuda.max_memory_reserved() / mib}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_trial(payload: TrialPayload, params: Mapping[str, Any], trial_number: int, reporter: Reporter, *,
              seed: int | None = None) -> Report:
    """Train, report intermediate FID at the budget's image marks with a checkpoint, then refine and score.

    ``seed``: of training and sampling (default: the study's; a confirmation trial brings its own).
    Returns the last report: a FinalReport, or a FailedReport when the trial cannot succeed (a
    diverged run, an invalid configuration, any error raised here). Nothing is raised but what
    stops the process (Ray's stop of a pruned trial), so Ray retries only lost workers.
    """
    ctx = payload.context
    plan = ctx.plan
    seed = plan.settings.seed if seed is None else seed
    run: TrialRun | None = None
    step = 0
    gpu, device = gpu_identity(), _device(ctx)
    try:
        check_params(params)
        s = plan.settings
        train_cfg = train_config(params, budget=plan.budget, seed=seed, dataset=s.dataset, precision=s.precision)
        refine_cfg = refine_config(params, precision=s.precision)
        # the study-wide settings that change the numbers go with the sampled params
        run = TrialRun.open(ctx.study_run, study_name=plan.name, trial_number=trial_number,
                            params={**params, "precision": s.precision, "gpus_per_trial": ctx.gpus_per_trial},
                            tags={"study": s.study, "budget": s.budget, "seed": seed, "dataset": s.dataset,
                                  "gpu": gpu, **_device_tags(device)})
        return _train_and_score(payload, train_cfg, refine_cfg, run, trial_number, reporter, gpu, device)
    except Exception as exc:  # noqa: BLE001 - a trial's error is its FAIL reason; retrying cannot heal it
        disk_full = is_disk_full(exc)
        reason = _one_line(exc)
        if not isinstance(exc, DivergenceError) and not disk_full:  # the full story goes to the trial's log, once
            traceback.print_exc(file=sys.stderr)
        step = getattr(exc, "step", step)
        if run is not None and not disk_full:
            try:
                run.set_tags({"fail_reason": reason})
            except Exception:  # noqa: BLE001 - the tracking store may be what failed
                pass
        out = FailedReport(optuna_trial=trial_number, mlflow_run_id=run.run_id if run else "",
                           resumed_from_step=0, gpu=gpu, step=int(step), fail_reason=reason, disk_full=disk_full)
        reporter.report(out, None)
        return out


def _train_and_score(payload: TrialPayload, train_cfg: TrainConfig, refine_cfg: RefineConfig | None, run: TrialRun,
                     trial_number: int, reporter: Reporter, gpu: str, device: str) -> Report:
    ctx = payload.context
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    if device == "cuda":  # this trial's own peak, not the process's (a restarted actor may reuse it)
        torch.cuda.reset_peak_memory_stats()
    evaluator = payload.inputs.evaluator.to(device)  # one evaluator: the intermediate FID and the final scores
    workdir = Path(tempfile.mkdtemp(prefix=f"trial-{trial_number:04d}-"))
    try:
        ckpt_path = workdir / CHECKPOINT_FILE
        resumed_from = reporter.restore(ckpt_path)
        if resumed_from:
            run.set_tags({"resumed_from_step": resumed_from})
        ids: dict[str, Any] = {"optuna_trial": trial_number, "mlflow_run_id": run.run_id,
                               "resumed_from_step": resumed_from, "gpu": gpu}
        marks = ctx.plan.budget.report_steps(train_cfg.images_per_step)
        on_eval = _IntermediateReports(ctx.plan.budget, evaluator, run, reporter, workdir, ids, marks, device,
                                       seed=train_cfg.seed, logged_step=resumed_from)
        result = train_gan(train_cfg, images_u8=payload.inputs.train_images, checkpoint_path=ckpt_path,
                           resume=resumed_from > 0, callback=on_eval, callback_steps=marks, progress=False,
                           device=device)
        trainer = result.trainer
        metrics, evaluator_name, sha = _score_final(payload, trainer, refine_cfg, run, workdir, device)
        models = save_checkpoint(workdir / "models.pt", {**trainer.models_state(), "history": trainer.history})
        run.log_artifact(models, "checkpoint")
        run.log_metrics({**metrics, **_gpu_memory(device)})
        run.set_tags({"evaluator_sha256": sha, "evaluator": evaluator_name})
        out = FinalReport(**ids, train_steps=trainer.step, train_images=trainer.step * train_cfg.images_per_step,
                          metrics=metrics, evaluator=evaluator_name, evaluator_sha256=sha)
        reporter.report(out, None)
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _IntermediateReports:
    """train_gan's callback at each image mark: the intermediate FID of the sampling generator (the
    average when the trial keeps one), the losses and a sample grid to MLflow, a checkpoint and a
    TrainReport to the reporter."""

    def __init__(self, budget: Budget, evaluator, run: TrialRun, reporter: Reporter, workdir: Path,
                 ids: dict[str, Any], marks: Mapping[int, int], device: str, *, seed: int, logged_step: int):
        self.budget, self.evaluator, self.run, self.reporter = budget, evaluator, run, reporter
        self.workdir, self.ids, self.marks, self.device, self.seed = workdir, ids, marks, device, seed
        self.logged_step = logged_step

    def __call__(self, trainer) -> None:
        samples = trainer.sample(self.budget.n_intermediate, seed=self.seed)
        if not torch.isfinite(samples).all():
            raise DivergenceError(trainer.step, "generated samples", math.nan)
        fid = float(self.evaluator.score(samples, metrics=("fid",))["fid"])
        h = trainer.history
        new = [i for i, s in enumerate(h["step"]) if s > self.logged_step]
        images = self.marks.get(trainer.step, trainer.step * trainer.config.images_per_step)
        self.run.log_series([("loss_d", h["loss_d"][i], h["step"][i]) for i in new]
                            + [("loss_g", h["loss_g"][i], h["step"][i]) for i in new]
                            + [("fid_intermediate", fid, trainer.step), ("images", images, trainer.step)]
                            + [(k, v, trainer.step) for k, v in _gpu_memory(self.device).items()])
        grid = save_grid(samples[:GRID_SIZE], self.workdir / "grids" / f"step_{trainer.step:06d}.png")
        self.run.log_artifact(grid, "samples")
        self.logged_step = trainer.step
        report_dir = self.workdir / "report"
        trainer.save(report_dir / CHECKPOINT_FILE)
        (report_dir / META_FILE).write_text(json.dumps({"step": trainer.step, "mlflow_run_id": self.run.run_id}))
        self.reporter.report(TrainReport(**self.ids, step=trainer.step, images=images, fid_intermediate=fid,
                                         loss_d=_mean([h["loss_d"][i] for i in new]),
                                         loss_g=_mean([h["loss_g"][i] for i in new])), report_dir)


def _score_final(payload: TrialPayload, trainer, refine_cfg: RefineConfig | None, run: TrialRun, workdir: Path,
                 device: str) -> tuple[dict[str, float], str, str]:
    """Final scores at the budget's sample size: the trajectory's last row after refinement (the
    objective), its step-0 row as ``*_before``; a study without refinement scores G's samples. The
    sampling generator is the weight average when the trial keeps one."""
    budget, evaluator, seed = payload.context.plan.budget, payload.inputs.evaluator, trainer.config.seed
    if refine_cfg is None:
        scores = evaluator.score(trainer.sample(budget.n_final, seed=seed))
        before, after, best_step, k_eff = scores, scores, 0, math.nan
        grid = save_grid(trainer.sample(GRID_SIZE, seed=seed), workdir / "final_samples.png")
        run.log_artifact(grid, "samples")
    else:
        result = _refine(payload, trainer, refine_cfg, device)
        traj = result.trajectory
        before = traj.loc[traj["step"] == 0].iloc[0].to_dict()
        after = traj.loc[traj["step"] == refine_cfg.steps].iloc[0].to_dict()
        best_step, k_eff = result.best_step, float(result.k_eff)
        from refinement import save_result

        paths = save_result(result, workdir / "refinement")
        for name, path in paths.items():
            if name != "samples":  # the refined images are reproducible from the checkpoint and seed
                run.log_artifact(path, "refinement")
        run.log_series([(f"refine_{k}", float(row[k]), int(row["step"])) for row in traj.to_dict("records")
                        for k in FINAL_METRICS if k in row])
    metrics: dict[str, float] = {k: float(after[k]) for k in FINAL_METRICS}
    metrics.update({f"{k}_before": float(before[k]) for k in BEFORE_METRICS})
    metrics.update(best_step=float(best_step), k_eff=k_eff, n_final=float(after["n_fake"]))
    return metrics, str(after["evaluator"]), str(after["evaluator_sha256"])


def _refine(payload: TrialPayload, trainer, refine_cfg: RefineConfig, device: str):
    from refinement import refine

    budget, inputs, seed = payload.context.plan.budget, payload.inputs, trainer.config.seed
    embedder = inputs.embedders.get(refine_cfg.embedding) if refine_cfg.embedded else None
    if embedder is not None:
        embedder = embedder.to(device)
    return refine(trainer.generator.eval(), trainer.D.eval(), refine_cfg, latent_dim=trainer.config.latent_dim,
                  latent_prior=trainer.config.latent_prior, n=budget.n_final, seed=seed, evaluator=inputs.evaluator,
                  score_steps=budget.refine_score_steps(refine_cfg.steps), batch_size=budget.refine_batch_size,
                  device=device, dataset=payload.context.plan.settings.dataset, embedder=embedder,
                  real_images=_real_sample(payload, refine_cfg.k_eff_pairs, seed).to(device))


def _real_sample(payload: TrialPayload, n: int, seed: int) -> torch.Tensor:
    """n training images, float [n, 1, 28, 28] in [-1, 1]: the real ends of K_eff's interpolates."""
    images = payload.inputs.train_images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return to_float(images[idx])


def ray_trainable(config: dict[str, Any], *, payload: TrialPayload) -> None:
    """The Ray Tune function trainable: config = {"params": ..., "optuna_trial": n, "seed": int,
    "resume_from": URI or None}; the payload comes from Ray's object store (``tune.with_parameters``)."""
    run_trial(payload, config["params"], int(config["optuna_trial"]), RayReporter(config["resume_from"]),
              seed=int(config["seed"]))
