"""End-to-end studies on the real stack: local Ray (2 CPUs), SQLite Optuna, MLflow (SQLite and a real
`mlflow server`), smoke budget. One CLI run per study, shared by the checks on it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from gan_models import load_models
from search.budgets import BUDGETS
from search.recipes import RECIPES, recipe_params
from search.studies import get_study

from search_helpers import GOOD_CONFIG, SMOKE_SPACE, artifact_paths, mlflow_runs, optuna_trials, run_cli, write

pytestmark = pytest.mark.slow
SMOKE = BUDGETS["smoke"]
# learns nothing in 6,400 images: tiny learning rates and a crippled WGAN critic
POOR_CONFIG = {**GOOD_CONFIG, "loss": "wgan", "clip_value": 0.001, "lr_g": 1e-5, "lr_d": 1e-5}
GOOD_HINGE = {**GOOD_CONFIG, "loss": "hinge"}
FINISHED_STATES = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def _study(tmp_path: Path, env, name: str, extra: list[str]) -> dict:
    space = write(tmp_path / "space.yaml", SMOKE_SPACE)
    proc = run_cli(["--study", name, "--budget", "smoke", "--trials", "4", "--study-file", str(space), "--seed", "0",
                    "--num-cpus", "2", "--quiet", *extra], cwd=tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    runs = tmp_path / "runs"
    return {"root": tmp_path, "proc": proc, "storage": f"sqlite:///{runs / 'optuna.db'}",
            "tracking": f"sqlite:///{runs / 'mlflow.db'}", "report": runs / "studies" / name, "ray": runs / "ray"}


@pytest.fixture(scope="module")
def gan_study(tmp_path_factory, search_env):
    tmp = tmp_path_factory.mktemp("gan-study")
    # two good configs run first, side by side; the poor one starts only when a slot frees, so it meets the
    # default pruner (successive halving: at the first rung, 1,600 images, the third arrival goes on only if best)
    enqueue = write(tmp / "enqueue.yaml", yaml.safe_dump([GOOD_CONFIG, GOOD_HINGE, POOR_CONFIG]))
    return _study(tmp, search_env, "gan", ["--enqueue", str(enqueue), "--no-recipes", "--max-concurrent", "2"])


def _check_study_stores(s: dict, name: str, n_objectives: int) -> list:
    trials = optuna_trials(s["storage"], name)
    assert len(trials) == 4 and {t.state for t in trials} <= FINISHED_STATES  # nothing left RUNNING
    parents, runs = mlflow_runs(s["tracking"], name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # one nested run per trial, closed with the trial's state
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == [t.number for t in trials]
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}[t.state.name]
        # the sampled params, and the study-wide settings that change the numbers
        assert run.data.params == {**{k: str(v) if not isinstance(v, float) else repr(v) for k, v in t.params.items()},
                                   "precision": "fp32", "gpus_per_trial": "0.0"}
    table = pd.read_parquet(s["report"] / "trials.parquet")
    assert list(table["number"]) == [t.number for t in trials]
    assert list(table["state"]) == [t.state.name for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete, "no trial completed"
    for t in complete:
        assert len(t.values) == n_objectives
        row = table[table["number"] == t.number].iloc[0]
        assert row["fid"] == pytest.approx(t.user_attrs["fid"]) and row["train_images"] == SMOKE.images
    study_files = set(artifact_paths(s["tracking"], parents[0].info.run_id))
    assert {"study/trials.parquet", "study/pareto_front.parquet", "study/pareto_front.png"} <= study_files
    assert any(f.startswith("study/history_") for f in study_files)
    assert "best trials:" in s["proc"].stdout
    return trials


def _check_complete_run(uri: str, run, trial, *, refined: bool) -> None:
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    m = run.data.metrics
    for key in ("fid", "precision", "recall", "fid_before", "best_step", "density", "coverage", "class_coverage"):
        assert key in m, key
    assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0 and m["n_final"] == SMOKE.n_final
    assert len(run.data.tags["evaluator_sha256"]) == 64
    # the intermediate FID at each image mark, logged at the generator step that reached it
    marks = SMOKE.report_steps(trial.params["batch_size"] * trial.params["n_critic"])
    curve = c.get_metric_history(run.info.run_id, "fid_intermediate")
    assert sorted(p.step for p in curve) == sorted(marks)
    images = c.get_metric_history(run.info.run_id, "images")
    assert sorted((p.step, p.value) for p in images) == sorted(marks.items())
    last = max(marks)
    losses = c.get_metric_history(run.info.run_id, "loss_d")
    assert sorted(p.step for p in losses) == list(range(1, last + 1))
    files = set(artifact_paths(uri, run.info.run_id))
    assert "checkpoint/models.pt" in files
    assert {f"samples/step_{s:06d}.png" for s in marks} <= files
    local = c.download_artifacts(run.info.run_id, "checkpoint/models.pt")
    models = load_models(local)
    assert models.step == last and models.generator is not None and models.discriminator is not None
    assert models.averaged == (trial.params["ema_decay"] > 0)  # the sampling generator: the average when kept
    if refined:
        assert {"refinement/frontier.parquet", "refinement/frontier.png", "refinement/strip.png",
                "refinement/precision_recall.png"} <= files
        frontier = pd.read_parquet(c.download_artifacts(run.info.run_id, "refinement/frontier.parquet"))
        steps = int(run.data.params["refine_steps"])
        assert list(frontier["step"]) == list(SMOKE.refine_score_steps(steps))
        assert frontier["fid"].iloc[-1] == pytest.approx(m["fid"]) and frontier["fid"].iloc[0] == pytest.approx(
            m["fid_before"])
        assert m["best_step"] == frontier.loc[frontier["fid"].idxmin(), "step"]
        assert "k_eff" in m or run.data.params["refine_k_eff"] == "one"
    else:
        assert m["fid"] == m["fid_before"] and "samples/final_samples.png" in files


def test_a_study_is_quiet_by_default(gan_study):
    """One start line, status lines, one line per finished trial, the summary: no Ray tables or hints."""
    lines = gan_study["proc"].stdout.splitlines()
    trial_lines = [ln for ln in lines if ln.startswith("trial ")]
    assert sorted(int(ln.split()[1]) for ln in trial_lines) == [0, 1, 2, 3]  # in the order they finished
    assert all(ln.split()[2] in ("COMPLETE", "PRUNED", "FAIL") for ln in trial_lines)
    status = [ln for ln in lines if ln.startswith("study gan: ") and " running of 4 " in ln]
    assert status and status[-1].startswith("study gan: ") and "| ETA " in status[-1]
    for noise in ("╭", "Trial status", "tensorboard", "Tuner.restore", "View detailed results"):
        assert noise not in gan_study["proc"].stdout
    # start line + status lines (every 30 s) + 4 trial lines + the summary (~12 lines)
    assert len(lines) <= 4 + len(status) + 1 + 20, lines


def test_gan_study_stores_and_tables(gan_study):
    trials = _check_study_stores(gan_study, "gan", 1)
    assert f"mlflow ui --backend-store-uri {gan_study['tracking']}" in gan_study["proc"].stdout
    assert trials[0].params == GOOD_CONFIG and trials[1].params == GOOD_HINGE
    _, runs = mlflow_runs(gan_study["tracking"], "gan")
    for t in trials:
        if t.state == TrialState.COMPLETE:
            run = next(r for r in runs if r.data.tags["optuna.trial_number"] == str(t.number))
            _check_complete_run(gan_study["tracking"], run, t, refined=False)
    front = pd.read_parquet(gan_study["report"] / "pareto_front.parquet")
    assert set(front["number"]) <= {t.number for t in trials if t.state == TrialState.COMPLETE}


def test_poor_config_is_pruned_in_optuna_and_stopped_in_ray(gan_study):
    trials = optuna_trials(gan_study["storage"], "gan")
    assert TrialState.COMPLETE in {trials[0].state, trials[1].state}
    poor = trials[2]
    assert poor.params == POOR_CONFIG
    assert poor.state == TrialState.PRUNED  # Ray's stock OptunaSearch would say COMPLETE
    images = poor.user_attrs["pruned_at_images"]
    assert images == SMOKE.asha_min_images and poor.user_attrs["train_images"] == images  # the first rung
    assert max(poor.intermediate_values) == images and poor.value == pytest.approx(poor.intermediate_values[images])
    # Ray: the trial's last result is the intermediate one the scheduler answered STOP to
    (trial_dir,) = (gan_study["ray"] / "gan-session001").glob("trial_0002_*")
    results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert {r["phase"] for r in results} == {"train"} and results[-1]["images"] == images
    assert results[-1]["done"] is True
    _, runs = mlflow_runs(gan_study["tracking"], "gan")
    run2 = next(r for r in runs if r.data.tags["optuna.trial_number"] == "2")
    assert run2.data.tags["pruned_at_images"] == str(images) and "fid" not in run2.data.metrics


@pytest.fixture(scope="module")
def dot_latent_study(tmp_path_factory, search_env, mlflow_server):
    tmp = tmp_path_factory.mktemp("dot-latent-study")
    # the known-good recipes are a new study's first trials (4 trials: the best four that fit the space)
    s = _study(tmp, search_env, "dot_latent", ["--pruner", "none", "--max-concurrent", "2",
                                               "--tracking-uri", mlflow_server["uri"]])
    return {**s, "tracking": mlflow_server["uri"]}


def test_dot_latent_study_on_a_real_mlflow_server(dot_latent_study):
    trials = _check_study_stores(dot_latent_study, "dot_latent", 1)
    _, runs = mlflow_runs(dot_latent_study["tracking"], "dot_latent")
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    study = get_study("dot_latent")
    recipes = list(RECIPES.values())[:4]
    assert [t.user_attrs["enqueued"] for t in trials] == [f"recipe {r.name}" for r in recipes]
    assert [t.params for t in trials] == [recipe_params(r, study) for r in recipes]
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.params["refine_method"] == "latent" and t.params["refine_steps"] == 5
            _check_complete_run(dot_latent_study["tracking"], by_number[t.number], t, refined=True)
            assert t.value == pytest.approx(t.user_attrs["fid"])  # the objective: FID after refinement
    assert f"MLflow UI: open {dot_latent_study['tracking']}" in dot_latent_study["proc"].stdout


@pytest.fixture(scope="module")
def pareto_study(tmp_path_factory, search_env):
    # Ray's results go to a URI, as on a cluster (s3://...): the same pyarrow filesystem path, on disk
    tmp = tmp_path_factory.mktemp("pareto-study")
    shared = tmp / "shared-storage"
    s = _study(tmp, search_env, "pareto", ["--max-concurrent", "2", "--storage-path", shared.as_uri(), "--no-recipes"])
    return {**s, "ray": shared}


def test_pareto_study_front(pareto_study):
    trials = _check_study_stores(pareto_study, "pareto", 2)
    import optuna

    study = optuna.load_study(study_name="pareto", storage=pareto_study["storage"])
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert study.user_attrs["search_settings"]["sampler"] == "nsga2"
    assert study.user_attrs["search_settings"]["pruner"] == "none"
    assert not any(t.state == TrialState.PRUNED for t in trials)
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.values == [pytest.approx(t.user_attrs["precision"]), pytest.approx(t.user_attrs["recall"])]
    front = pd.read_parquet(pareto_study["report"] / "pareto_front.parquet")
    assert sorted(front["number"]) == sorted(t.number for t in study.best_trials)
    assert (pareto_study["report"] / "pareto_front_optuna.png").is_file()


def test_ray_results_and_checkpoints_go_to_a_storage_uri(pareto_study):
    trial_dirs = sorted((pareto_study["ray"] / "pareto-session001").glob("trial_*"))
    assert len(trial_dirs) == 4
    finals = 0
    for trial_dir in trial_dirs:
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        if results[-1]["phase"] != "final":
            continue
        finals += 1
        # num_to_keep=1: the last intermediate report's checkpoint, G and D state plus its step
        (checkpoint,) = trial_dir.glob("checkpoint_*")
        assert (checkpoint / "checkpoint.pt").is_file()
        last_train = results[-2]  # the final report carries no checkpoint: the last image mark's does
        assert last_train["phase"] == "train" and last_train["images"] == SMOKE.images
        assert json.loads((checkpoint / "meta.json").read_text())["step"] == last_train["step"]
    assert finals >= 1
    assert not (pareto_study["root"] / "runs" / "ray").exists()  # nothing went to the local default


def test_confirm_retrains_the_best_configuration_with_more_seeds(tmp_path_factory, search_env):
    """--confirm 1 --confirm-top 1: the best trial's params once more with seed + 1, in the study's own
    `<name>.confirm` study and its experiment; mean ± sd over the two runs, printed, tabled and logged."""
    import math

    import optuna
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp("confirm-study")
    s = _study(tmp, search_env, "gan", ["--trials", "2", "--pruner", "none", "--confirm", "1", "--confirm-top", "1"])
    best = optuna.load_study(study_name="gan", storage=s["storage"]).best_trial
    (rerun,) = optuna_trials(s["storage"], "gan.confirm")
    assert rerun.state == TrialState.COMPLETE and rerun.params == best.params
    assert rerun.user_attrs["confirms"] == best.number and rerun.user_attrs["seed"] == 1  # the study's seed 0 + 1
    fids = [best.user_attrs["fid"], rerun.user_attrs["fid"]]
    mean, sd = sum(fids) / 2, math.sqrt(sum((f - sum(fids) / 2) ** 2 for f in fids))  # n - 1 = 1
    confirmed = pd.read_parquet(s["report"] / "confirmed.parquet")
    assert list(confirmed["number"]) == [best.number] and list(confirmed["n_seeds"]) == [2]
    assert confirmed["fid_mean"].iloc[0] == pytest.approx(mean) and confirmed["fid_sd"].iloc[0] == pytest.approx(sd)
    table = pd.read_csv(s["report"] / "best_trials.csv")
    assert table.loc[table["number"] == best.number, "fid_mean"].iloc[0] == pytest.approx(mean)
    assert f"trial {best.number}: fid {mean:.4g} ± {sd:.2g}" in s["proc"].stdout and "(n = 2 seeds)" in s["proc"].stdout
    parents, runs = mlflow_runs(s["tracking"], "gan")
    study_parent = next(p for p in parents if p.data.tags["search.study_name"] == "gan")
    assert MlflowClient(s["tracking"]).get_run(study_parent.info.run_id).data.metrics["confirmed_fid_mean"] == \
        pytest.approx(mean)
    assert {p.data.tags["search.study_name"] for p in parents} == {"gan", "gan.confirm"}
    assert len(runs) == 3  # two trials and the rerun, each under its own parent run
