"""A study's settings: what defines it, stored with it at creation and reused (and checked) on --resume,
and the plan every part of a run reads them from.

``StudySettings`` is the stored record (names and numbers, JSON in Optuna's user attrs). ``StudyPlan`` is
that record with every name resolved once (the study's space, the budget), the narrowing, and the trials to
try first; it is the one object that travels: to the trials through Ray (search.payload), to the Optuna
bridge, to the progress line and to MLflow's parent run. Nothing looks a name up again downstream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gan_models.config import PRECISION_NAMES, FrozenConfig
from gan_models.registry import check_choice

from .budgets import Budget, get_budget
from .errors import SearchError
from .hardware import Hardware, choose
from .options import SearchOptions
from .samplers import PRUNERS, SAMPLERS
from .space import Narrowing, SpaceError, narrow, narrowing_to_jsonable, read_study_file, read_yaml
from .studies import STUDIES, Study, get_study
from .urls import is_sqlite, sqlite_path

SETTINGS_ATTR = "search_settings"
# successive halving that waits for η values at a rung (search.quorum_halving): Optuna's own asynchronous rule
# let the first arrivals stop each other and lost the best configuration in benchmarks/pruning_gain (docs/benchmarks.md)
DEFAULT_PRUNER = "asha-quorum"


@dataclass(frozen=True)
class StudySettings(FrozenConfig):
    """What defines a study: stored with it at creation, reused (and checked) on --resume."""

    config_name: ClassVar[str] = "stored study settings"
    config_error: ClassVar[type[Exception]] = SearchError

    study: str
    budget: str = "small"
    sampler: str = "tpe"
    pruner: str = DEFAULT_PRUNER
    seed: int = 0
    trials: int = 20
    dataset: str = "mnist"
    precision: str = "fp32"  # of every trial's training and refinement
    narrowing: Mapping[str, Any] = field(default_factory=dict)  # the study file's params, as JSON

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "narrowing": dict(self.narrowing)}  # JSON for Optuna's user attrs


DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudySettings) if f.default is not dataclasses.MISSING}
# a flag may not change these on --resume
DEFINING = ("study", "budget", "sampler", "pruner", "seed", "dataset", "precision")


@dataclass(frozen=True)
class StudyPlan:
    """The study as this run executes it: its settings, and what they name, resolved once."""

    name: str  # the Optuna study / MLflow experiment name
    settings: StudySettings
    study: Study
    budget: Budget
    narrowing: Narrowing  # name -> ParamSpec
    enqueued: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # (label, params) to try first: recipes, --enqueue
    resume: bool = False
    notes: tuple[str, ...] = ()  # what was chosen for the user (hardware, recipes left out)

    def with_trials(self, trials: int) -> StudyPlan:
        """The plan for ``trials`` trials (a new study sized to the machine): what it tries first capped to them."""
        recipes = [e for e in self.enqueued if e[0].startswith("recipe ")]
        others = [e for e in self.enqueued if not e[0].startswith("recipe ")]
        notes = list(self.notes)
        if len(recipes) > trials:
            notes.append(f"recipes {', '.join(label[len('recipe '):] for label, _ in recipes[trials:])} left out: "
                         f"only {trials} trials")
        return dataclasses.replace(self, settings=self.settings.replace(trials=trials),
                                   enqueued=(*recipes[:trials], *others), notes=tuple(notes))

    @property
    def tags(self) -> dict[str, str]:
        """The settings as MLflow tags of the study's parent run (and its params, but trials and narrowing)."""
        return {k: str(v) for k, v in self.settings.to_dict().items() if k != "narrowing"}


def existing_studies(storage: str) -> list[str]:
    """Study names in the storage; an absent SQLite file holds none (and is not created here)."""
    import optuna

    if is_sqlite(storage) and not sqlite_path(storage).is_file():
        return []
    try:
        return optuna.study.get_all_study_names(storage)
    except Exception as exc:  # noqa: BLE001 - any storage failure is the user's URL
        raise SearchError(f"cannot open the Optuna storage {storage}: {str(exc).splitlines()[0]}") from None


def plan_study(opts: SearchOptions, storage: str, hardware: Hardware) -> StudyPlan:
    """The study's settings from the flags (a new study) or its storage (--resume), resolved and checked."""
    study_file = _read_study_file(opts)
    if study_file is not None and study_file["study"] and not opts.study:
        opts = dataclasses.replace(opts, study=study_file["study"])
    name = opts.name or opts.study
    if name is None:
        raise SearchError("--study (or --name with --resume) is required; see --list-studies")
    if opts.study is not None:
        _lookup(get_study, opts.study)  # an unknown study is reported before anything else
    stored = _stored_settings(opts, storage, name)
    file_params = study_file["params"] if study_file else None
    choice = None if stored else choose(hardware, budget=opts.budget, narrowed=file_params or {})
    settings = _settings(opts, stored, budget=choice.budget if choice else None)
    study, budget = _validate(settings)
    params = {**(choice.narrowing if choice else {}), **(file_params if file_params is not None
                                                         else settings.narrowing)}
    try:
        narrowing = study.narrowing(params)
    except SpaceError as exc:
        raise SearchError(f"study file {opts.study_file}: {exc}") from None
    if file_params is not None and stored is not None and narrowing_to_jsonable(narrowing) != dict(stored.narrowing):
        raise SearchError("--study-file differs from the one the resumed study was created with")
    settings = settings.replace(narrowing=narrowing_to_jsonable(narrowing))
    notes = [choice.note] if choice else []
    enqueued: list[tuple[str, Mapping[str, Any]]] = []
    if opts.recipes and stored is None:
        from .recipes import study_recipes

        kept, left_out = study_recipes(study, narrowing)
        if len(kept) > settings.trials:  # in order: a short study tries the first recipes
            left_out.append(f"recipes {', '.join(n for n, _ in kept[settings.trials:])} left out: "
                            f"only {settings.trials} trials")
        enqueued += [(f"recipe {n}", p) for n, p in kept[:settings.trials]]
        notes += left_out
    if opts.enqueue_file:
        enqueued += [(f"--enqueue entry {i}", p) for i, p in enumerate(_read_enqueue_file(opts.enqueue_file, study))]
    return StudyPlan(name=name, settings=settings, study=study, budget=budget, narrowing=narrowing,
                     enqueued=tuple(enqueued), resume=opts.resume, notes=tuple(notes))


def _lookup(fn, *args):
    """Registry lookups raise ValueError listing the valid names; at the CLI that is bad input."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise SearchError(str(exc)) from None


def _read_study_file(opts: SearchOptions) -> dict[str, Any] | None:
    if not opts.study_file:
        return None
    try:
        study_file = read_study_file(opts.study_file)
    except SpaceError as exc:
        raise SearchError(str(exc)) from None
    if study_file["study"] and opts.study and study_file["study"] != opts.study:
        raise SearchError(f"study file {opts.study_file} is for study {study_file['study']!r}, "
                          f"not --study {opts.study}")
    return study_file


def _stored_settings(opts: SearchOptions, storage: str, name: str) -> StudySettings | None:
    import optuna

    from .resume import live_driver

    existing = existing_studies(storage)
    if not opts.resume:
        if name in existing:
            raise SearchError(f"study {name!r} already exists in {storage}; continue it with --resume "
                              f"or start another with --name")
        return None
    if name not in existing:
        raise SearchError(f"cannot --resume study {name!r}: it does not exist in {storage} "
                          f"(existing: {', '.join(existing) or 'none'})")
    stored = optuna.load_study(study_name=name, storage=storage)
    values = stored.user_attrs.get(SETTINGS_ATTR)
    if values is None:
        raise SearchError(f"study {name!r} in {storage} was not created by search.run; cannot resume it")
    other = live_driver(stored)
    if other is not None:
        raise SearchError(f"study {name!r} is being run by process {other['pid']} on this host; stop it first")
    return StudySettings.from_dict(values)


def _settings(opts: SearchOptions, stored: StudySettings | None, *, budget: str | None) -> StudySettings:
    """The stored settings on --resume (a conflicting flag is an error), else the flags with their
    defaults (``budget``: the hardware's choice when --budget is not given). ``trials`` may be raised on --resume."""
    given = {k: getattr(opts, k) for k in DEFINING if getattr(opts, k) is not None}
    if stored is not None:
        for key, value in given.items():
            if value != getattr(stored, key):
                raise SearchError(f"--{key} {value} conflicts with the resumed study's {key} "
                                  f"{getattr(stored, key)!r}; leave it out to continue the study as it was created")
        return stored.replace(trials=opts.trials or stored.trials)
    if opts.study is None:
        raise SearchError("--study is required (see --list-studies)")
    study = STUDIES[opts.study]
    return StudySettings(**{**given, "budget": opts.budget or budget or DEFAULTS["budget"],
                            "trials": opts.trials or DEFAULTS["trials"],
                            "sampler": opts.sampler or study.default_sampler,
                            "pruner": opts.pruner or (DEFAULTS["pruner"] if study.prunable else "none")})


def _validate(s: StudySettings) -> tuple[Study, Budget]:
    from gan_models.data import check_dataset_name

    study = _lookup(get_study, s.study)
    budget = _lookup(get_budget, s.budget)
    _lookup(check_dataset_name, s.dataset)
    check_choice("sampler", s.sampler, SAMPLERS, SearchError)
    check_choice("precision", s.precision, PRECISION_NAMES, SearchError)
    check_choice("pruner", s.pruner, PRUNERS, SearchError)
    if study.multi_objective and s.pruner != "none":
        raise SearchError(f"study {study.name} has {len(study.objectives)} objectives and Optuna cannot "
                          f"prune multi-objective studies; use --pruner none")
    return study, budget


def _read_enqueue_file(path: str, study: Study) -> list[dict[str, Any]]:
    p = Path(path)
    try:
        data = read_yaml(p, "enqueue file")
    except SpaceError as exc:
        raise SearchError(str(exc)) from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise SearchError(f"enqueue file {p} must hold a list of parameter mappings")
    for i, params in enumerate(data):
        try:
            for name, value in params.items():
                if isinstance(value, (list, dict)):
                    raise SpaceError(f"parameter {name}: an enqueued trial fixes values, got {value!r}")
            narrow(study.specs, params)
        except SpaceError as exc:
            raise SearchError(f"enqueue file {p}, entry {i}: {exc}") from None
    return data
