"""The Optuna <-> Ray bridge driven step by step as Ray's TuneController drives it: real Optuna (SQLite),
real MLflow (SQLite), real ``ray.tune.experiment.Trial`` objects; no Ray cluster needed."""

from __future__ import annotations

import dataclasses
import pickle
import time

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from search.bridge import OptunaPruningScheduler, OptunaSearcher, StudyLink, TrialStarts
from search.messages import FailedReport, FinalReport, Phase, TrainReport, final_metric_names, parse_result
from search.samplers import make_pruner, make_sampler
from search.tracking import TrialRun, open_study_run, trial_runs

from search_helpers import plan_for

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"  # created once: MLflow's migrations are slow


def _link(tmp_path, uri: str, study: str, pruner: str, n: int) -> StudyLink:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = plan_for(study, storage, name="bridge", pruner=pruner, sampler="random", trials=n)
    ostudy = optuna.create_study(study_name="bridge", storage=storage, directions=list(plan.study.directions),
                                 sampler=make_sampler("random", seed=0, n_trials=n),
                                 pruner=make_pruner(pruner, plan.budget))
    sr = open_study_run(uri, f"bridge-{tmp_path.name}", resume=False, tags={})
    return StudyLink(plan=plan, study=ostudy, n_to_run=n, study_run=sr)


def _start(searcher: OptunaSearcher, link: StudyLink) -> tuple[Trial, dict, str]:
    trial = Trial("ray_trainable", stub=True)
    config = searcher.suggest(trial.trial_id)
    run = TrialRun.open(link.study_run, study_name="bridge", trial_number=config["optuna_trial"],
                        params=config["params"])  # as the worker does
    return trial, config, run.run_id


def _ids(trial_number: int, run_id: str) -> dict:
    # trials alternate between two GPUs of one node, as Ray's fractional GPUs place them
    return {"optuna_trial": trial_number, "mlflow_run_id": run_id, "resumed_from_step": 0,
            "gpu": f"10.0.0.7:{trial_number % 2}"}


def _train(trial_number: int, run_id: str, images: int, fid: float) -> dict:
    return TrainReport(**_ids(trial_number, run_id), step=images // 64, images=images, fid_intermediate=fid,
                       loss_d=0.5, loss_g=0.7).to_result()


def _final(trial_number: int, run_id: str, **metrics: float) -> dict:
    return FinalReport(**_ids(trial_number, run_id), train_steps=100, train_images=6400, metrics=metrics,
                       evaluator="mnist-lenet-seed0", evaluator_sha256="0" * 64).to_result()


def test_messages_round_trip_through_rays_flat_dicts():
    train = TrainReport(**_ids(3, "r"), step=25, images=1600, fid_intermediate=12.5, loss_d=0.5, loss_g=0.7)
    assert train.to_result() == {"phase": "train", "optuna_trial": 3, "mlflow_run_id": "r", "resumed_from_step": 0,
                                 "gpu": "10.0.0.7:1", "step": 25, "images": 1600, "fid_intermediate": 12.5,
                                 "loss_d": 0.5, "loss_g": 0.7}
    final = FinalReport(**_ids(3, "r"), train_steps=100, train_images=6400, metrics={"fid": 9.0, "best_step": 2.0},
                        evaluator="e", evaluator_sha256="s")
    flat = final.to_result()
    assert flat["phase"] == Phase.FINAL.value and flat["fid"] == 9.0 and "metrics" not in flat
    assert parse_result({**flat, "time_total_s": 4.0, "training_iteration": 5}) == final  # Ray's own keys ignored
    failed = FailedReport(**_ids(3, "r"), step=40, fail_reason="DataNotFoundError: mnist data not found")
    assert parse_result(failed.to_result()) == failed and parse_result(train.to_result()) == train
    full = FailedReport(**_ids(3, "r"), step=40, fail_reason="OSError: [Errno 28] No space left", disk_full=True)
    assert parse_result(full.to_result()) == full and full.to_result()["disk_full"] is True
    assert parse_result({"time_total_s": 1.0}) is None and parse_result(None) is None
    assert final_metric_names()[:3] == ("fid", "precision", "recall")


def test_complete_pruned_failed_and_errored_trials(tmp_path, uri):
    link = _link(tmp_path, uri, "gan", "median", 4)
    searcher, scheduler = OptunaSearcher(link), OptunaPruningScheduler(link)

    # 1. a trial reports its FID curve and final metrics -> COMPLETE with the final FID
    t0, c0, run0 = _start(searcher, link)
    assert c0["optuna_trial"] == 0 and set(c0["params"]) >= {"architecture", "loss", "lr_g"}
    for images, fid in ((1600, 300.0), (3200, 200.0), (4800, 150.0), (6400, 120.0)):
        assert scheduler.on_trial_result(None, t0, _train(0, run0, images, fid)) == TrialScheduler.CONTINUE
    final = _final(0, run0, fid=110.0, precision=0.7, recall=0.4, fid_before=110.0, best_step=0.0,
                   k_eff=float("nan"))
    searcher.on_trial_complete(t0.trial_id, final)

    # 2. a worse curve -> the pruner stops it: PRUNED in Optuna, STOP to Ray, nothing told twice
    t1, c1, run1 = _start(searcher, link)
    assert scheduler.on_trial_result(None, t1, _train(1, run1, 1600, 500.0)) == TrialScheduler.STOP
    searcher.on_trial_complete(t1.trial_id, _train(1, run1, 1600, 500.0))  # Ray then completes it with its last result

    # 3. a diverged trial -> FAIL with its reason; 4. a Ray error -> FAIL, the study goes on
    t2, c2, run2 = _start(searcher, link)
    reason = "training diverged at step 40: generator loss is nan"
    searcher.on_trial_complete(t2.trial_id, FailedReport(**_ids(2, run2), step=40, fail_reason=reason).to_result())
    t3, c3, run3 = _start(searcher, link)
    scheduler.on_trial_error(None, t3)
    searcher.on_trial_complete(t3.trial_id, None, error=True)
    assert searcher.suggest("another") == Searcher.FINISHED  # the session's 4 trials were asked

    trials = link.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL]
    assert trials[0].value == 110.0
    assert trials[0].intermediate_values == {1600: 300.0, 3200: 200.0, 4800: 150.0, 6400: 120.0}
    assert trials[0].user_attrs["precision"] == 0.7 and trials[0].user_attrs["train_images"] == 6400
    assert trials[0].user_attrs["best_step"] == 0 and isinstance(trials[0].user_attrs["best_step"], int)
    assert trials[1].user_attrs["pruned_at_images"] == 1600 and trials[1].user_attrs["train_images"] == 1600
    assert trials[1].params == c1["params"]
    assert trials[2].user_attrs["fail_reason"] == reason
    assert trials[3].user_attrs["fail_reason"].startswith("the Ray trial raised an error")
    # the GPU each trial reported, from its first report (a final one for trial 2); none from a Ray error
    assert [t.user_attrs.get("gpu") for t in trials] == ["10.0.0.7:0", "10.0.0.7:1", "10.0.0.7:0", None]
    runs = {int(r.data.tags["optuna.trial_number"]): r for r in trial_runs(link.study_run)}
    assert {n: (r.info.status, r.data.tags["optuna.state"]) for n, r in runs.items()} == {
        0: ("FINISHED", "COMPLETE"), 1: ("FINISHED", "PRUNED"), 2: ("FAILED", "FAIL"), 3: ("FAILED", "FAIL")}
    assert runs[2].data.tags["fail_reason"] == reason and runs[1].data.tags["pruned_at_images"] == "1600"
    # the study at a glance on its parent run, updated as each trial ended
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    parent = c.get_run(link.study_run.parent_run_id).data
    assert {k: parent.metrics[k] for k in ("n_complete", "n_pruned", "n_fail", "best_fid", "best_trial")} == {
        "n_complete": 1.0, "n_pruned": 1.0, "n_fail": 2.0, "best_fid": 110.0, "best_trial": 0.0}
    # images spent: 6,400 (complete) + 1,600 (pruned) + 0 + 0, against 4 unpruned trials of the smoke budget
    assert parent.metrics["images_spent"] == 8000.0 and parent.metrics["images_unpruned"] == 25600.0
    assert parent.tags["best.trials"] == "0" and parent.tags["best.mlflow_run_ids"] == run0
    assert parent.tags["best.params.loss"] == c0["params"]["loss"]
    curve = sorted((m.step, m.value) for m in c.get_metric_history(link.study_run.parent_run_id, "n_fail"))
    assert curve == [(1, 0.0), (2, 0.0), (3, 1.0), (4, 2.0)]  # one point per finished trial


def test_multi_objective_reports_nothing_to_a_pruner_and_tells_both_values(tmp_path, uri):
    link = _link(tmp_path, uri, "pareto", "none", 1)
    searcher, scheduler = OptunaSearcher(link), OptunaPruningScheduler(link)
    t, c, run = _start(searcher, link)
    assert c["params"]["refine_method"] in ("latent", "latent-image")
    assert scheduler.on_trial_result(None, t, _train(0, run, 1600, 900.0)) == TrialScheduler.CONTINUE
    searcher.on_trial_complete(t.trial_id, _final(0, run, fid=50.0, precision=0.8, recall=0.3))
    (trial,) = link.study.trials
    assert trial.values == [0.8, 0.3] and trial.intermediate_values == {}


def test_searcher_and_scheduler_survive_rays_pickling(tmp_path, uri):
    link = _link(tmp_path, uri, "gan", "median", 2)
    searcher = OptunaSearcher(link)
    _start(searcher, link)
    clone = pickle.loads(pickle.dumps(searcher))  # Ray pickles the tuner config with its experiment state
    assert clone.link.live == {} and clone.link.study is None  # inert: the study stays with the driver
    assert clone.link.plan == link.plan and clone.link.n_to_run == 2
    scheduler = pickle.loads(pickle.dumps(OptunaPruningScheduler(link)))
    assert scheduler.link.study_run == link.study_run
    searcher.save(str(tmp_path / "searcher.json"))
    searcher.restore(str(tmp_path / "searcher.json"))
    other = dataclasses.replace(link, plan=dataclasses.replace(link.plan, name="other"))
    with pytest.raises(ValueError, match="belongs to another study"):
        OptunaSearcher(other).restore(str(tmp_path / "searcher.json"))


def test_checkpoint_uris_any_node_can_open():
    from search.bridge import checkpoint_uri

    assert checkpoint_uri("bucket/ray/s-session001/trial_0000_ab/checkpoint_000002", "s3://bucket/ray") == \
        "s3://bucket/ray/s-session001/trial_0000_ab/checkpoint_000002"
    assert checkpoint_uri("bucket/ray/t/checkpoint_000001", "s3://bucket/ray?endpoint_override=h:9&scheme=http") == \
        "s3://bucket/ray/t/checkpoint_000001?endpoint_override=h:9&scheme=http"
    assert checkpoint_uri("/shared/ray/t/checkpoint_000001", "file:///shared/ray") == \
        "file:///shared/ray/t/checkpoint_000001"
    assert checkpoint_uri("/home/u/runs/ray/t/checkpoint_000001", "/home/u/runs/ray") == \
        "file:///home/u/runs/ray/t/checkpoint_000001"


def test_an_interrupted_trial_is_enqueued_again_with_its_checkpoint(tmp_path, uri):
    from search.resume import CHECKPOINT_ATTR, RESUME_FROM_ATTR, recover_stale_trials

    link = _link(tmp_path, uri, "gan", "none", 2)
    searcher = OptunaSearcher(link)
    _, c0, _ = _start(searcher, link)
    assert c0["resume_from"] is None
    link.live["t0"] = link.live.popitem()[1]
    link.live["t0"].set_user_attr(CHECKPOINT_ATTR, "s3://bucket/ray/trial_0000/checkpoint_000003")
    assert recover_stale_trials(link.study) == [0]  # the driver was lost with trial 0 running
    _, c1, _ = _start(searcher, link)
    assert c1["params"] == c0["params"] and c1["optuna_trial"] == 1
    assert c1["resume_from"] == "s3://bucket/ray/trial_0000/checkpoint_000003"
    rerun = link.study.trials[1]
    assert rerun.user_attrs["retry_of"] == 0 and rerun.user_attrs[RESUME_FROM_ATTR].endswith("checkpoint_000003")


def test_trial_starts_record_when_ray_first_ran_each_trial(tmp_path, uri):
    """Ray asks the searcher ahead, while the trial still waits for resources: the start that
    search.packing counts is Ray's on_trial_start, kept from the first time (a restart keeps it)."""
    link = _link(tmp_path, uri, "gan", "none", 2)
    searcher, starts = OptunaSearcher(link), TrialStarts(link)
    t0, _, _ = _start(searcher, link)
    t1, _, _ = _start(searcher, link)  # asked, not yet started
    starts.on_trial_start(iteration=1, trials=[t0, t1], trial=t0)
    link.started(t0.trial_id, 1_000.0)  # a restart after a lost worker: the first start stays
    link.started("not-a-live-trial", 5.0)  # a trial the searcher no longer tracks: ignored
    trials = link.study.get_trials(deepcopy=False)
    assert abs(trials[0].user_attrs["ran_from"] - time.time()) < 60
    assert "ran_from" not in trials[1].user_attrs
    link.started(t1.trial_id, 1_000.0)
    assert link.study.get_trials(deepcopy=False)[1].user_attrs["ran_from"] == 1_000.0


def test_the_last_mark_is_never_pruned(tmp_path, uri):
    """A trial at its budget's last image mark has trained it all: it completes, however it compares."""
    link = _link(tmp_path, uri, "gan", "median", 2)
    searcher, scheduler = OptunaSearcher(link), OptunaPruningScheduler(link)
    t0, _, run0 = _start(searcher, link)
    for images in (1600, 3200, 4800, 6400):
        scheduler.on_trial_result(None, t0, _train(0, run0, images, 100.0))
    searcher.on_trial_complete(t0.trial_id, _final(0, run0, fid=90.0, precision=0.7, recall=0.4))
    t1, _, run1 = _start(searcher, link)
    assert scheduler.on_trial_result(None, t1, _train(1, run1, 1600, 99.0)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, t1, _train(1, run1, 6400, 900.0)) == TrialScheduler.CONTINUE
    assert link.study.trials[1].state == TrialState.RUNNING


def test_a_full_disk_stops_the_study_and_keeps_its_trials_for_resume(tmp_path, uri):
    """A trial that cannot write stops every trial and asks for no new one; the trials stay RUNNING in Optuna,
    which --resume reruns from their checkpoints once space is freed."""
    link = _link(tmp_path, uri, "gan", "none", 4)
    searcher, scheduler = OptunaSearcher(link), OptunaPruningScheduler(link)
    t0, _, run0 = _start(searcher, link)
    t1, _, run1 = _start(searcher, link)
    reason = "OSError: [Errno 28] No space left on device: '/runs/ray/x'"
    full = FailedReport(**_ids(0, run0), step=25, fail_reason=reason, disk_full=True).to_result()
    assert scheduler.on_trial_result(None, t0, full) == TrialScheduler.STOP
    assert link.stopped == reason
    assert scheduler.on_trial_result(None, t1, _train(1, run1, 1600, 300.0)) == TrialScheduler.STOP
    searcher.on_trial_complete(t0.trial_id, full)
    searcher.on_trial_complete(t1.trial_id, _train(1, run1, 1600, 300.0))
    assert searcher.suggest("next") == Searcher.FINISHED
    assert [t.state for t in link.study.trials] == [TrialState.RUNNING, TrialState.RUNNING]
