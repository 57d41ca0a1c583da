"""A study's results as tables and pictures: every trial, the precision/recall Pareto front, the best
trials, and Optuna's history / importance / intermediate-value plots (matplotlib backend); and the
driver's last step, ``report``, which writes them and returns the study's outcome."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from .messages import FINAL_METRICS
from .packing import RAN_FROM_ATTR, gpu_sharing, sharing_metrics
from .settings import StudyPlan
from .stores import ENQUEUED_ATTR, OpenStudy, Stores
from .studies import Study

# the best-trials table's score columns: the final scores, FID before refinement next to FID after
METRIC_COLUMNS = (FINAL_METRICS[0], "fid_before", *FINAL_METRICS[1:], "best_step", "k_eff", "train_images")
FRONT_AXES = ("precision", "recall")  # both maximised


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), params_*, metrics and bookkeeping."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name}
        if t.values is not None:
            row.update({f"value_{i}": v for i, v in enumerate(t.values)})
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({k: v for k, v in t.user_attrs.items()})
        row["datetime_start"] = t.datetime_start
        row["datetime_complete"] = t.datetime_complete
        row["duration_s"] = (t.duration.total_seconds() if t.duration is not None else np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["number", "state"])
    # parquet wants one type per column: params and attributes mix bools, numbers and strings
    for col in df.columns:
        if df[col].dtype == object and col not in ("datetime_start", "datetime_complete"):
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if len(kinds) > 1 or kinds & {bool, dict, list}:
                df[col] = df[col].map(lambda v: None if v is None else str(v))
    return df


def pareto_front(table: pd.DataFrame) -> pd.DataFrame:
    """The complete trials that no other complete trial beats in both precision and recall."""
    if table.empty or not set(FRONT_AXES) <= set(table.columns):
        return table.iloc[0:0]
    done = table[(table["state"] == "COMPLETE")].dropna(subset=list(FRONT_AXES))
    pts = done[list(FRONT_AXES)].to_numpy(dtype=float)
    keep = []
    for p in pts:
        # dominated: another point >= in both and > in one
        dominated = np.any(np.all(pts >= p, axis=1) & np.any(pts > p, axis=1))
        keep.append(not dominated)
    return done[np.array(keep, dtype=bool)].sort_values("recall")


def best_trials(study_def: Study, table: pd.DataFrame, confirmed: pd.DataFrame | None = None,
                n: int = 5) -> pd.DataFrame:
    """The Pareto front for a multi-objective study, else the n best complete trials by objective; with
    ``confirmed`` (search.confirm), each confirmed trial's mean ± sd over seeds beside its own scores."""
    if table.empty or "value_0" not in table.columns:
        return table.iloc[0:0]
    if study_def.multi_objective:
        best = pareto_front(table)
    else:
        done = table[table["state"] == "COMPLETE"]
        best = done.sort_values("value_0", ascending=study_def.directions[0] == "minimize").head(n)
    cols = ["number"] + [c for c in METRIC_COLUMNS if c in best.columns]
    cols += [c for c in ("params_architecture", "params_loss", "params_refine_method", "params_refine_steps",
                         ENQUEUED_ATTR, "mlflow_run_id") if c in best.columns]
    best = best[cols].reset_index(drop=True)
    if confirmed is not None and not confirmed.empty:
        best = best.merge(confirmed, on="number", how="left")
    return best


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(table: pd.DataFrame, front: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    done = table[table["state"] == "COMPLETE"] if "state" in table.columns else table
    if set(FRONT_AXES) <= set(done.columns):
        ax.scatter(done["recall"], done["precision"], s=18, c="0.6", label="complete trials")
        ax.plot(front["recall"], front["precision"], "o-", c="C3", label="Pareto front")
        for _, r in front.iterrows():
            ax.annotate(str(int(r["number"])), (r["recall"], r["precision"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision / recall of the final samples")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing complete yet: no legend to draw
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_intermediate(study: optuna.Study):
    """Every trial's intermediate FID curve; a pruned curve dashed, with an x where it was cut."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    drawn = 0
    for t in study.get_trials(deepcopy=False):
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        pruned = t.state == TrialState.PRUNED
        label = f"trial {t.number}" + (f" (pruned at {steps[-1]:,})" if pruned else f" ({t.state.name.lower()})")
        line, = ax.plot(steps, values, "--" if pruned else "-", lw=1.2, alpha=0.8 if pruned else 1.0, label=label)
        if pruned:
            ax.plot(steps[-1], values[-1], "x", ms=9, mew=2, c=line.get_color())
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError("no trial has reported an intermediate FID yet")
    ax.set_yscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("intermediate FID")
    ax.set_title("intermediate FID per trial (dashed, x: pruned there)")
    ax.grid(alpha=0.3)
    if drawn <= 20:
        ax.legend(fontsize=7, ncol=2)
    return ax


def optuna_plots(study: optuna.Study, study_def: Study, folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's matplotlib plots; a plot that cannot be drawn yet (e.g. importances need two
    complete trials with varying params) is listed in the second dict with the reason."""
    from optuna.visualization import matplotlib as ovm

    plt = _pyplot()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    jobs: dict[str, Callable[[], Any]] = {}
    for i, name in enumerate(study_def.objectives):
        target: Callable[[FrozenTrial], float] | None = (
            None if not study_def.multi_objective else (lambda t, i=i: t.values[i]))
        jobs[f"history_{name}"] = functools.partial(ovm.plot_optimization_history, study, target=target,
                                                    target_name=name)
        jobs[f"importance_{name}"] = functools.partial(ovm.plot_param_importances, study, target=target,
                                                       target_name=name)
    if study_def.prunable:
        jobs["intermediate_fid"] = lambda: plot_intermediate(study)
    if study_def.multi_objective:
        jobs["pareto_front_optuna"] = lambda: ovm.plot_pareto_front(study, target_names=list(study_def.objectives))
    paths, skipped = {}, {}
    for name, job in jobs.items():
        if name.startswith("importance") and len(complete) < 2:
            skipped[name] = f"needs 2 complete trials, has {len(complete)}"
            continue
        if name.startswith(("history", "pareto_front")) and not complete:
            skipped[name] = "no complete trial yet"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
                ax = job()
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            paths[name] = folder / f"{name}.png"
            fig.savefig(paths[name], dpi=110)
            plt.close(fig)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            plt.close("all")
    return paths, skipped


def write_study_report(study: optuna.Study, study_def: Study, folder: Path, *,
                       confirmed: pd.DataFrame | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """trials.parquet, pareto_front.parquet (+ .png), best_trials.csv, confirmed.parquet (with --confirm)
    and Optuna's plots in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    table = trials_table(study)
    front = pareto_front(table)
    paths = {"trials": folder / "trials.parquet", "pareto_front": folder / "pareto_front.parquet",
             "best_trials": folder / "best_trials.csv"}
    table.to_parquet(paths["trials"], index=False)
    front.to_parquet(paths["pareto_front"], index=False)
    best_trials(study_def, table, confirmed).to_csv(paths["best_trials"], index=False)
    if confirmed is not None:
        paths["confirmed"] = folder / "confirmed.parquet"
        confirmed.to_parquet(paths["confirmed"], index=False)
    paths["pareto_front_png"] = plot_front(table, front, folder / "pareto_front.png")
    plots, skipped = optuna_plots(study, study_def, folder)
    paths.update(plots)
    return paths, skipped


def study_summary(study: optuna.Study, plan: StudyPlan) -> dict:
    """The study at a glance, for its parent MLflow run: metrics, and tags naming the best trial(s)."""
    study_def = plan.study
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    spent = sum(int(t.user_attrs.get("train_images", 0)) for t in finished)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in finished if t.datetime_complete is not None]
    metrics = {f"n_{state.lower()}": float(n) for state, n in counts.items()}
    metrics.update(images_spent=float(spent), images_unpruned=float(len(finished) * plan.budget.images))
    if starts and ends:
        metrics["wall_time_s"] = (max(ends) - min(starts)).total_seconds()
    metrics.update(sharing_metrics(gpu_sharing(
        {"gpu": t.user_attrs.get("gpu"), RAN_FROM_ATTR: t.user_attrs.get(RAN_FROM_ATTR),
         "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete}
        for t in finished)))
    tags: dict[str, str] = {}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trials if study_def.multi_objective else [study.best_trial]
        if not study_def.multi_objective:
            metrics[f"best_{study_def.objectives[0]}"] = float(study.best_value)
            metrics["best_trial"] = float(best[0].number)
        tags["best.trials"] = ",".join(str(t.number) for t in best)
        tags["best.mlflow_run_ids"] = ",".join(str(t.user_attrs.get("mlflow_run_id", "")) for t in best)
        tags.update({f"best.params.{k}": repr(v) if isinstance(v, float) else str(v)
                     for k, v in best[0].params.items()})
    return {"metrics": metrics, "tags": tags}


# --- the driver's last step ------------------------------------------------------------------------------------


@dataclass
class StudyOutcome:
    name: str
    storage: str
    tracking_uri: str
    experiment_id: str  # the study's MLflow experiment
    interrupted: bool
    table: pd.DataFrame  # every trial
    best: pd.DataFrame  # the best trials / the Pareto front
    report_dir: Path
    skipped_plots: dict[str, str]
    resume_command: str
    notes: list[str] = field(default_factory=list)
    confirmed: pd.DataFrame | None = None  # mean ± sd over seeds of the best configurations (search.confirm)

    @property
    def n_complete(self) -> int:
        return 0 if self.table.empty else int((self.table["state"] == "COMPLETE").sum())


def report(plan: StudyPlan, stores: Stores, opened: OpenStudy, *, completed: bool, resume_command: str,
           notes: list[str], confirmed: pd.DataFrame | None = None) -> StudyOutcome:
    """Write the study's tables and plots, log them and its summary on the parent run; end that run when
    the study completed. ``confirmed``: the seed confirmations, joined to the best-trials table."""
    from .tracking import end_study_run, log_study_artifacts, log_study_summary

    log_study_summary(opened.study_run, opened.study, plan)
    report_dir = stores.runs_dir / "studies" / plan.name
    _, skipped = write_study_report(opened.study, plan.study, report_dir, confirmed=confirmed)
    log_study_artifacts(opened.study_run, report_dir)
    if completed:
        end_study_run(opened.study_run, "FINISHED")
    table = trials_table(opened.study)
    return StudyOutcome(name=plan.name, storage=stores.storage, tracking_uri=stores.tracking_uri,
                        experiment_id=opened.study_run.experiment_id, interrupted=not completed, table=table,
                        best=best_trials(plan.study, table, confirmed), report_dir=report_dir, skipped_plots=skipped,
                        resume_command=resume_command, notes=notes, confirmed=confirmed)
