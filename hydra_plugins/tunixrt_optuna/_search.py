"""The search loop: ask optuna for a batch of trials, launch them as Hydra jobs, tell
optuna each job's result, until the study holds `n_trials` COMPLETE trials.

Resume: the study is loaded by name, COMPLETE trials count towards `n_trials`, and
trials left RUNNING by a process that died are marked FAIL first. One sweeper process
drives a study at a time. A trial's job number (its folder's prefix) is its trial
number, so folders of a restarted search never clash with the earlier ones.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import warnings
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from tunixrt.files import atomic_write_text
from tunixrt.registry.urls import mask_config, mask_text, mask_url

from ._space import Param, SearchSpaceError, choice_param, parse_space
from ._storage import open_storage, open_study, storage_url
from .config import SearchSettings

log = logging.getLogger("hydra_plugins.tunixrt_optuna")

OVERRIDES_ATTR = "overrides"  # user attr: the job's full override list
RUN_DIR_ATTR = "run_dir"  # user attr: the job's folder
RESULTS_FILE = "optuna_results.yaml"
NOT_IN_STUDY_NAME = ("launcher", "registry.url", "run.name", "run.resume")


def split_arguments(arguments: Sequence[str], space: dict[str, Param]) -> tuple[list[str], dict]:
    """Command-line overrides -> (fixed overrides for every trial, the search space).
    `key=value` pins a searched key; `key=a,b` (or choice/range) searches it as a
    categorical; other sweeps (interval, glob) belong in hydra.sweeper.params."""
    space = dict(space)
    fixed = []
    overrides = OverridesParser.create().parse_overrides(list(arguments))
    for text, override in zip(arguments, overrides, strict=True):
        name = override.key_or_group
        if not override.is_sweep_override():
            fixed.append(text)
            if space.pop(name, None) is not None:
                log.info("%s is fixed by the command line: not searched", name)
        elif override.is_discrete_sweep():
            texts = list(override.sweep_string_iterator())
            try:
                space[name] = choice_param(name, texts, override.get_key_element())
            except ValueError as err:
                raise SearchSpaceError(f"{text}: {err}") from None
        else:
            raise SearchSpaceError(
                f"{text}: the Optuna sweeper searches comma lists, choice() and range() from "
                "the command line; give ranges in hydra.sweeper.params, e.g. "
                f"'+hydra.sweeper.params.{name}=\"float(0.1, 0.5)\"'"
            )
    return fixed, space


def default_study_name(config: DictConfig, arguments: Sequence[str]) -> str:
    """Stable for the same command (overrides in any order), distinct for another one, so
    two searches over different fixed settings never mix in one study. Overrides that
    change only where or how the jobs run (NOT_IN_STUDY_NAME) leave the name as it is."""
    preset = OmegaConf.select(config, "hydra.runtime.choices.hparams_search") or "optuna"
    kept = [a for a in arguments if a.split("=", 1)[0].lstrip("+~") not in NOT_IN_STUDY_NAME]
    digest = hashlib.sha256("\n".join(sorted(kept)).encode()).hexdigest()[:8]
    return f"tunixrt-{preset}-{digest}"


def run_search(
    settings: SearchSettings,
    *,
    config: DictConfig,
    loader: ConfigLoader,
    launcher: Launcher,
    arguments: Sequence[str],
) -> list[JobReturn]:
    """One search: `config` is the sweep's config, `loader` composes each trial's config
    from it, `launcher` runs the trials, `arguments` are the command-line overrides."""
    return _Search(settings, config, loader, launcher, arguments).run()


class _Search:
    def __init__(
        self,
        settings: SearchSettings,
        config: DictConfig,
        loader: ConfigLoader,
        launcher: Launcher,
        arguments: Sequence[str],
    ) -> None:
        self.settings, self.config, self.loader, self.launcher = settings, config, loader, launcher
        self.fixed, self.space = split_arguments(arguments, parse_space(settings.params))
        if not self.space:
            raise SearchSpaceError("nothing to search: hydra.sweeper.params is empty")
        self.metric = OmegaConf.select(config, "optimized_metric", default="value")
        try:
            self.direction = settings.direction_for(self.metric)
        except ValueError as err:
            raise SearchSpaceError(str(err)) from None
        self.study_name = settings.study_name or default_study_name(config, arguments)
        registry_url = OmegaConf.select(config, "registry.url", default="auto")
        self.storage = storage_url(settings.storage, registry_url)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        # trial number -> its overrides as launched; the study stores them masked
        self.job_overrides: dict[int, list[str]] = {}

    def run(self) -> list[JobReturn]:
        # A bad fixed override fails the command once, here, instead of every trial.
        self.loader.load_sweep_config(self.config, list(self.fixed))
        _route_optuna_logs()
        self.optuna_storage = open_storage(self.storage, self.settings.heartbeat_s)
        study = open_study(self.storage, self.study_name, self.direction, self.optuna_storage)
        _fail_stale(study)
        seed = self.settings.seed
        # Offset by the trials already asked, so a restart does not replay their points.
        study.sampler = optuna.samplers.TPESampler(
            seed=None if seed is None else seed + len(study.trials),
            n_startup_trials=self.settings.n_startup_trials,
        )
        log.info(
            "study %s in %s: %d of %d trials complete",
            self.study_name,
            mask_url(self.storage) if self.storage else "memory",
            _count(study, TrialState.COMPLETE),
            self.settings.n_trials,
        )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.sweep_dir / "multirun.yaml", mask_text(OmegaConf.to_yaml(self.config))
        )
        returns = self._loop(study)
        self._finish(study)
        return returns

    def _loop(self, study: optuna.Study) -> list[JobReturn]:
        returns: list[JobReturn] = []
        n_trials, max_failures = self.settings.n_trials, self.settings.max_failures
        limit = n_trials if max_failures is None else max_failures
        failures = 0
        while (done := _count(study, TrialState.COMPLETE)) < n_trials:
            _fail_stale(study)  # a search elsewhere on this study may have died meanwhile
            if failures > limit:
                raise CompactHydraException(
                    f"{failures} trials of study {self.study_name} failed in this run, more "
                    f"than hydra.sweeper.max_failures={limit}; see the trials' errors above"
                )
            size = min(self.settings.n_jobs, n_trials - done)
            trials = [self._ask(study) for _ in range(size)]
            for trial, outcome in self._launch(study, trials, returns):
                failures += outcome is None
                self._tell(study, trial, outcome)
        return returns

    def _ask(self, study: optuna.Study) -> Trial:
        trial = study.ask({name: p.distribution for name, p in self.space.items()})
        # optuna never counts a trial without any heartbeat as stale: beat at once, so a
        # search killed before its jobs start leaves trials the next search can fail
        _record_heartbeat(self.optuna_storage, trial)
        sampled = [p.override(trial.params[name]) for name, p in self.space.items()]
        self.job_overrides[trial.number] = [*self.fixed, *sampled]
        trial.set_user_attr(OVERRIDES_ATTR, mask_config(self.job_overrides[trial.number]))
        return trial

    def _launch(
        self, study: optuna.Study, trials: list[Trial], returns: list[JobReturn]
    ) -> list[tuple[Trial, float | None]]:
        """Launch the trials whose config composes; [(trial, value or None)]."""
        outcomes: list[tuple[Trial, float | None]] = []
        runnable = []
        for trial in trials:
            try:
                self.loader.load_sweep_config(self.config, self.job_overrides[trial.number])
                runnable.append(trial)
            except Exception as err:
                log.error("trial %d: its config does not compose: %s", trial.number, err)
                outcomes.append((trial, None))
        try:
            for group in _consecutive(runnable):
                batch = [self.job_overrides[t.number] for t in group]
                with _Heartbeat(self.optuna_storage, group, self.settings.heartbeat_s):
                    results = self.launcher.launch(batch, initial_job_idx=group[0].number)
                returns.extend(results)
                outcomes.extend((t, self._value(t, r)) for t, r in zip(group, results, strict=True))
        except BaseException:
            # Ctrl-C, a preempted job's SystemExit: record the batch as failed, then stop.
            told = {t.number for t, _ in outcomes}
            with suppress(Exception):
                for trial in runnable:
                    if trial.number not in told:
                        study.tell(trial, state=TrialState.FAIL)
                        log.warning("trial %d FAIL: interrupted", trial.number)
                for trial, value in outcomes:
                    self._tell(study, trial, value)
            raise
        return outcomes

    def _value(self, trial: Trial, ret: JobReturn) -> float | None:
        run_dir = ret.hydra_cfg and OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir")
        if run_dir:
            trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
        try:
            value = ret.return_value
        except Exception as err:
            log.error("trial %d: the job raised %s: %s", trial.number, type(err).__name__, err)
            return None
        if value is None:
            log.error("trial %d: the job failed (no %s); see its log", trial.number, self.metric)
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            log.error("trial %d: %s=%r is not a finite number", trial.number, self.metric, value)
            return None
        return number

    def _tell(self, study: optuna.Study, trial: Trial, value: float | None) -> None:
        sampled = " ".join(p.override(trial.params[n]) for n, p in self.space.items())
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
            log.info("trial %d FAIL: %s", trial.number, sampled)
            return
        study.tell(trial, value)
        log.info("trial %d COMPLETE %s=%.6g: %s", trial.number, self.metric, value, sampled)

    def _finish(self, study: optuna.Study) -> None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        summary: dict[str, Any] = {
            "study_name": self.study_name,
            "storage": mask_url(self.storage) if self.storage else None,
            "direction": self.direction,
            "metric": self.metric,
            "complete": len(complete),
            "failed": _count(study, TrialState.FAIL),
        }
        if complete:
            best = study.best_trial
            summary["best"] = _describe(best)
            log.info("best: trial %d %s=%.6g %s", best.number, self.metric, best.value, best.params)
        OmegaConf.save(OmegaConf.create(summary), self.sweep_dir / RESULTS_FILE)


def _describe(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "value": trial.value,
        "params": dict(trial.params),
        "overrides": _overrides(trial),
        "run_dir": trial.user_attrs.get(RUN_DIR_ATTR),
    }


def _overrides(trial: Trial | FrozenTrial) -> list[str]:
    return list(trial.user_attrs[OVERRIDES_ATTR])


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _fail_stale(study: optuna.Study) -> None:
    """Fail the RUNNING trials whose sweeper stopped beating (SIGKILL, a lost node); the
    trials of a search still alive on the same study keep running."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():  # experimental in optuna since 2.9, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    _fail_never_beaten(study)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if failed := sorted(running - still):
        numbers = ", ".join(map(str, failed))
        log.warning("marked trials whose sweeper stopped (no heartbeat) as failed: %s", numbers)


def _fail_never_beaten(study: optuna.Study) -> None:
    """Fail the RUNNING trials that never got a heartbeat and were asked longer ago than
    the grace period: their sweeper died between asking and its first beat, and optuna's
    own stale check only sees trials that have beaten once."""
    # A study reads through optuna's caching wrapper; the SQL storage is behind it.
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, RDBStorage) or storage.get_heartbeat_interval() is None:
        return
    interval = storage.get_heartbeat_interval() or 0
    with storage.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT trial_id FROM trial_heartbeats"))
        beaten = {row[0] for row in rows}
    # optuna stamps datetime_start with the local clock, as datetime.now() reads it
    cutoff = datetime.now() - timedelta(seconds=2 * interval)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if trial._trial_id not in beaten and started is not None and started < cutoff:
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _record_heartbeat(storage: optuna.storages.BaseStorage, trial: Trial) -> None:
    if isinstance(storage, optuna.storages.RDBStorage):
        # Optuna keys heartbeats by the storage's trial id, which Trial keeps as _trial_id.
        storage.record_heartbeat(trial._trial_id)


class _Heartbeat:
    """Context manager: records a heartbeat for `trials` every `every_s` seconds while
    their jobs run, so another search on the study sees them as alive."""

    def __init__(
        self, storage: optuna.storages.BaseStorage, trials: list[Trial], every_s: int
    ) -> None:
        self.trials = trials
        self.storage, self.every_s = storage, every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            for trial in self.trials:
                with suppress(Exception):  # a missed beat is retried next interval
                    _record_heartbeat(self.storage, trial)
            if self.stop.wait(self.every_s):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _consecutive(trials: list[Trial]) -> list[list[Trial]]:
    """Runs of consecutive trial numbers: one launch each, its job numbers = trial numbers."""
    groups: list[list[Trial]] = []
    for trial in trials:
        if groups and groups[-1][-1].number + 1 == trial.number:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def _route_optuna_logs() -> None:
    """Optuna's messages through Hydra's logging (console and the sweep's log) rather
    than optuna's own stderr handler."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
