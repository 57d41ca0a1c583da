"""Ray Tune running a study's trials: the Tuner wired to the Optuna bridge, and the driver's trial step.

Ray Tune schedules (resources, restarts of lost workers, checkpoints in shared storage); the bridge's
searcher asks Optuna for each trial and its scheduler prunes (search.bridge); the trial itself is
search.trial's, fed the study's payload from Ray's object store.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .errors import DiskFull
from .payload import TrialContext, TrialInputs, TrialPayload
from .settings import StudyPlan

if TYPE_CHECKING:
    from .stores import OpenStudy, Stores


def run_trials(plan: StudyPlan, stores: Stores, opened: OpenStudy, inputs: TrialInputs, *, cpus_per_trial: float,
               gpus_per_trial: float, max_concurrent: int | None, max_failures: int, verbose: int,
               progress_every_s: float, log) -> bool:
    """Ray Tune runs the remaining trials; returns True when they all ran (False: interrupted).
    Raises DiskFull when the study stopped because a trial could not write."""
    from .bridge import StudyLink
    from .progress import StudyProgress
    from .resume import finished_trials

    s = plan.settings
    context = TrialContext(plan=plan, study_run=opened.study_run, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial)
    link = StudyLink(plan=plan, study=opened.study, n_to_run=opened.remaining, study_run=opened.study_run,
                     storage_path=stores.storage_path)
    before = Counter(t.state.name for t in finished_trials(opened.study))
    link.progress = StudyProgress(plan=plan, n_before=dict(before), every_s=progress_every_s)
    completed = False
    try:
        if opened.remaining > 0:
            log(f"study {plan.name}: {s.study} on {s.dataset} at budget {s.budget} "
                f"({plan.budget.images:,} images per trial), {opened.remaining} of {s.trials} trials to run "
                f"(sampler {s.sampler}, pruner {s.pruner}, seed {s.seed})")
            _tuner(link, TrialPayload(context=context, inputs=inputs), session=opened.session,
                   resources={"cpu": cpus_per_trial, "gpu": gpus_per_trial}, max_concurrent=max_concurrent,
                   max_failures=max_failures, verbose=verbose).fit()
            link.progress.refresh(force=True)
        # Ray returns normally after a Ctrl-C too: trials it cut off are still live in the link
        completed = not link.live and link.asked >= link.n_to_run and not link.stopped
    finally:
        link.progress.close()
        cut = settle(opened, completed=completed)
    if link.stopped:
        raise DiskFull(link.stopped)
    if cut:
        log(f"interrupted: trials {', '.join(map(str, cut))} were cut off and will rerun on --resume")
    return completed


def settle(opened: OpenStudy, *, completed: bool) -> list[int]:
    """After Ray returns (or is interrupted): trials cut off are marked interrupted and enqueued again, MLflow's
    runs are closed as Optuna recorded them, and the parent run is KILLED unless the study completed. Returns
    the numbers of the cut-off trials. A SIGKILL leaves this to --resume; so does a full disk, where these
    writes would fail too."""
    from .errors import is_disk_full
    from .resume import reconcile_runs, recover_stale_trials
    from .tracking import end_study_run

    try:
        cut = recover_stale_trials(opened.study)
        reconcile_runs(opened.study, opened.study_run)
        if not completed:
            end_study_run(opened.study_run, "KILLED")
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        return []
    return cut


def _trial_name(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}"


def _trial_dirname(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}_{trial.trial_id}"


def _tuner(link, payload: TrialPayload, *, session: int, resources: dict[str, float], max_concurrent: int | None,
           max_failures: int, verbose: int):
    from ray import tune

    from .bridge import OptunaPruningScheduler, OptunaSearcher, TrialStarts
    from .trial import ray_trainable

    # with_parameters puts the payload (data, evaluator, embedders, the plan) in Ray's object store once;
    # every trial on every node reads it from there, never from a path
    trainable = tune.with_parameters(ray_trainable, payload=payload)
    return tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearcher(link), scheduler=OptunaPruningScheduler(link),
            num_samples=link.n_to_run, max_concurrent_trials=max_concurrent,
            # a worker process serves trial after trial: torch, MLflow and the payload load once
            reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            callbacks=[link.progress, TrialStarts(link)],
            # one Ray experiment per driver session; the study's record is Optuna's storage
            name=f"{link.plan.name}-session{session:03d}", storage_path=link.storage_path, verbose=verbose,
            # only a lost worker raises here: a trial's own errors end it as FAIL (trial.py)
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
