"""One trial in process, no Ray: what it reports, what it logs, and that it reads no path.

The payload is built once (data, prepared evaluator, embedders), then the data root and the
evaluation cache are made unreadable to the trial by pointing both at folders that do not exist:
a trial that opened either would fail. A bad configuration ends as a FailedReport with its reason,
never an exception (an exception would make Ray retry a trial that cannot heal).
"""

from __future__ import annotations

import math

import pytest

from search.budgets import BUDGETS
from search.messages import FINAL_METRICS, FailedReport, FinalReport, TrainReport
from search.payload import TrialContext, TrialPayload, load_inputs
from search.tracking import open_study_run
from search.trial import LocalReporter, run_trial

from search_helpers import GOOD_CONFIG, artifact_paths, plan_for

SMOKE = BUDGETS["smoke"]
LATENT = {**GOOD_CONFIG, "ema_decay": 0.99, "refine_method": "latent", "refine_steps": 2, "refine_lr": 0.01,
          "refine_optimizer": "adam", "refine_norm": "l2", "refine_k_eff": "one", "refine_projection": "exact"}


@pytest.fixture(scope="module")
def payload(tmp_path_factory, data_root, search_env, monkeypatch_module):
    monkeypatch_module.setenv("GAN_EVAL_CACHE", search_env["GAN_EVAL_CACHE"])
    folder = tmp_path_factory.mktemp("trial")
    plan = plan_for("dot_latent", f"sqlite:///{folder / 'optuna.db'}", name="in-process")
    inputs = load_inputs(plan, data_root=str(data_root), download=False)
    study_run = open_study_run(f"sqlite:///{folder / 'mlflow.db'}", "in-process", resume=False, tags={})
    context = TrialContext(plan=plan, study_run=study_run)
    # from here on, the trial can reach neither the data nor the evaluation cache
    monkeypatch_module.setenv("GAN_DATA_ROOT", "/nonexistent/data")
    monkeypatch_module.setenv("GAN_EVAL_CACHE", "/nonexistent/cache")
    return TrialPayload(context=context, inputs=inputs)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_trial_reports_train_then_final_and_logs_its_run(payload):
    reporter = LocalReporter()
    out = run_trial(payload, LATENT, 7, reporter)
    assert isinstance(out, FinalReport) and reporter.reports[-1] == out
    train = reporter.reports[:-1]
    assert all(isinstance(r, TrainReport) for r in train)
    # every mark of the budget's images, at the first step that reaches it: 1,600 images = 25 steps of 64
    assert [r.images for r in train] == [1600, 3200, 4800, 6400] and [r.step for r in train] == [25, 50, 75, 100]
    assert all(math.isfinite(r.fid_intermediate) and r.fid_intermediate > 0 for r in train)
    assert out.train_steps == 100 and out.train_images == SMOKE.images
    assert out.optuna_trial == 7 and len(out.evaluator_sha256) == 64
    assert set(FINAL_METRICS) <= set(out.metrics) and out.metrics["n_final"] == SMOKE.n_final
    assert 0.0 <= out.metrics["precision"] <= 1.0 and out.metrics["k_eff"] == 1.0
    # the last intermediate FID and the unrefined final FID score the same generator at different n
    assert out.metrics["fid_before"] > 0
    files = set(artifact_paths(payload.context.study_run.tracking_uri, out.mlflow_run_id))
    assert {"checkpoint/models.pt", "refinement/frontier.parquet", "samples/step_000100.png"} <= files


def test_equal_images_whatever_the_batch_and_critic_steps(payload):
    """A batch of 32 with 2 critic steps consumes 64 real images a step, as a batch of 64 with 1 does."""
    reporter = LocalReporter()
    out = run_trial(payload, {**LATENT, "batch_size": 32, "n_critic": 2, "refine_steps": 1}, 9, reporter, seed=3)
    assert isinstance(out, FinalReport) and out.train_steps == 100 and out.train_images == SMOKE.images
    assert [r.images for r in reporter.reports[:-1]] == [1600, 3200, 4800, 6400]


def test_a_bad_configuration_fails_at_once_with_its_reason(payload):
    reporter = LocalReporter()
    out = run_trial(payload, {**LATENT, "loss": "lsgan"}, 8, reporter)
    assert isinstance(out, FailedReport) and reporter.reports == [out]
    assert out.fail_reason.startswith("ConfigError: ") and "lsgan" in out.fail_reason
    assert "valid choices" in out.fail_reason and "\n" not in out.fail_reason


def test_a_rerun_restores_the_interrupted_trials_checkpoint_from_its_uri(tmp_path):
    """No Ray checkpoint of its own yet: the reporter copies the one the lost driver recorded."""
    import json

    from search.trial import CHECKPOINT_FILE, META_FILE, RayReporter

    folder = tmp_path / "shared" / "trial_0003_ab" / "checkpoint_000002"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_FILE).write_bytes(b"model state at step 50")
    (folder / META_FILE).write_text(json.dumps({"step": 50, "mlflow_run_id": "r"}))
    target = tmp_path / "work" / CHECKPOINT_FILE
    target.parent.mkdir()
    # outside a Ray session tune.get_checkpoint() is None, as for a trial Ray has not checkpointed
    assert RayReporter(resume_from=folder.as_uri()).restore(target) == 50
    assert target.read_bytes() == b"model state at step 50"
    assert RayReporter(resume_from=None).restore(tmp_path / "work" / "other.pt") == 0


def test_an_incomplete_checkpoint_falls_back_to_the_newest_complete_one(tmp_path):
    """A head lost mid-upload leaves the newest checkpoint folder without its files."""
    import json

    from search.trial import CHECKPOINT_FILE, META_FILE, copy_checkpoint

    trial_dir = tmp_path / "trial_0001_ab"
    for index, step in ((0, 25), (1, 50)):
        folder = trial_dir / f"checkpoint_{index:06d}"
        folder.mkdir(parents=True)
        (folder / CHECKPOINT_FILE).write_bytes(f"state at {step}".encode())
        (folder / META_FILE).write_text(json.dumps({"step": step}))
    (trial_dir / "checkpoint_000002").mkdir()  # the upload the lost head never finished
    target = tmp_path / "restored.pt"
    assert copy_checkpoint((trial_dir / "checkpoint_000002").as_uri(), target) == 50
    assert target.read_bytes() == b"state at 50"
    assert copy_checkpoint((tmp_path / "nothing" / "checkpoint_000000").as_uri(), target) == 0


def test_the_newest_complete_checkpoint_is_taken_even_past_the_recorded_one(tmp_path):
    """Ray keeps one checkpoint: the recorded (one report behind) folder may be gone already."""
    import json

    from search.trial import CHECKPOINT_FILE, META_FILE, copy_checkpoint

    folder = tmp_path / "trial_0001_ab" / "checkpoint_000001"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_FILE).write_bytes(b"state at 50")
    (folder / META_FILE).write_text(json.dumps({"step": 50}))
    gone = tmp_path / "trial_0001_ab" / "checkpoint_000000"  # deleted by Ray's num_to_keep=1
    assert copy_checkpoint(gone.as_uri(), tmp_path / "restored.pt") == 50
