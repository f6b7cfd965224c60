"""The schedulers of standard NAS: MO-ASHA seeded with the initial design, Pareto ranks for its
rungs, an exact trial limit, and the scheduler of each method (:func:`make_standard_nas_scheduler`).

They load neither torch nor transformers: a Syne Tune user can run them in their own ``Tuner``.
"""

from __future__ import annotations

from typing import Any, Sequence

from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import TrialScheduler, TrialSuggestion

from nasprune.search.encoding import Config
# MO-ASHA and its Pareto-rank rungs are shared with the weight-sharing search.
from nasprune.search.multifidelity import SeededMOASHA
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SearchSpace

#: The methods of standard NAS: MO-ASHA (multi-fidelity, over epochs) and the single-fidelity searchers.
STANDARD_NAS_METHODS = ("moasha", *METHODS)


class TrialLimit(TrialScheduler):
    """Runs ``scheduler`` for at most ``max_trials`` trials, and lets the last ones finish.

    Syne Tune's ``StoppingCriterion(max_num_trials_started=N)`` fires once *more* than N trials
    were started, after which the tuner kills the running ones. A scheduler that runs dry
    instead (``suggest`` returns None) makes the tuner wait for the running trials and finish:
    exactly N trials, each trained as far as its scheduler lets it.

    :param max_trials: The trials to start; None: no limit.
    :param restart: ``(config, trial id)`` of trials an interrupted run of the experiment left
        unfinished: they are started first (counted against ``max_trials``), each from the
        checkpoint of its earlier trial.
    """

    def __init__(
        self, scheduler: TrialScheduler, max_trials: int | None,
        restart: Sequence[tuple[Config, int]] = (),
    ):
        super().__init__(random_seed=scheduler.random_seed)
        self.scheduler = scheduler
        self.max_trials = max_trials
        self.num_started = 0
        self.restart = list(restart)

    def suggest(self) -> TrialSuggestion | None:
        if self.max_trials is not None and self.num_started >= self.max_trials:
            return None
        if self.restart:
            config, earlier_trial_id = self.restart.pop(0)
            self.num_started += 1
            return TrialSuggestion.start_suggestion(dict(config), checkpoint_trial_id=earlier_trial_id)
        suggestion = self.scheduler.suggest()
        if suggestion is not None and suggestion.spawn_new_trial_id:
            self.num_started += 1
        return suggestion

    def on_trial_add(self, trial: Trial) -> None:
        self.scheduler.on_trial_add(trial)

    def on_trial_error(self, trial: Trial) -> None:
        self.scheduler.on_trial_error(trial)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        return self.scheduler.on_trial_result(trial, result)

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        self.scheduler.on_trial_complete(trial, result)

    def on_trial_remove(self, trial: Trial) -> None:
        self.scheduler.on_trial_remove(trial)

    def metric_names(self) -> list[str]:
        return self.scheduler.metric_names()

    def metric_mode(self) -> str:
        return self.scheduler.metric_mode()

    def metadata(self) -> dict[str, Any]:
        return {**self.scheduler.metadata(), "max_trials": self.max_trials}


def make_standard_nas_scheduler(
    method: str,
    config_space: dict[str, Any],
    metrics: list[str],
    epochs: int,
    points_to_evaluate: list[Config] | None = None,
    random_seed: int | None = None,
    space: SearchSpace | None = None,
) -> TrialScheduler:
    """The scheduler of an S-NAS ``method`` (see :data:`STANDARD_NAS_METHODS`).

    ``moasha`` is :class:`SeededMOASHA` with ``max_t=epochs`` (given the search ``space``, it
    never suggests a random config whose sub-network it suggested before); the other methods
    are the single-fidelity schedulers of :func:`nasprune.search.registry.make_scheduler`.
    """
    if method == "moasha":
        return SeededMOASHA(
            config_space, metrics, epochs, points_to_evaluate, random_seed=random_seed,
            config_key=space.to_subnet if space is not None else None,
        )
    return make_scheduler(method, config_space, metrics, points_to_evaluate, random_seed)
