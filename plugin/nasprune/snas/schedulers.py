"""The schedulers of standard NAS: MO-ASHA seeded with the initial design, Pareto ranks for its
rungs, an exact trial limit, and the scheduler of each method (:func:`make_standard_nas_scheduler`).

They load neither torch nor transformers: a Syne Tune user can run them in their own ``Tuner``.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import TrialScheduler, TrialSuggestion
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient

from nasprune.search.encoding import Config, ConfigEncoder
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SearchSpace

#: The methods of standard NAS: MO-ASHA (multi-fidelity) and the single-fidelity searchers.
STANDARD_NAS_METHODS = ("moasha", *METHODS)
#: MO-ASHA's rungs: the first after one epoch, then every factor of 3 (Schmucker et al. 2021).
GRACE_PERIOD = 1
REDUCTION_FACTOR = 3


class ParetoRankPriority(MOPriority):
    """One priority per result, lower is better: the rank in a non-dominated sort.

    Rows are sorted front by front (every row of the first Pareto front before every row of the
    second, and so on); inside a front the rows follow an epsilon-net, as in Syne Tune's
    non-dominated sort: first the row lowest in objective ``dim``, then always the row farthest
    from those already taken, so that the front's first rows spread over the whole trade-off.

    MO-ASHA's rungs read the priority of the *newest* row. Syne Tune 0.16's
    ``nondominated_sort`` returns neither ranks nor an order: for each front it lists the
    front's rows indexed by their within-front ranks (``front[ranks]``), so using its output as
    priorities (``NonDominatedPriority``) mixes the fronts, and inverting it as an order
    permutes the ranks inside each front (the front's best row can come last). So the ranks are
    computed here from Syne Tune's ``pareto_efficient`` and our own epsilon-net.
    """

    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = dim

    def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
        return pareto_ranks(objectives, self.dim)


def pareto_ranks(objectives: np.ndarray, dim: int = 0) -> np.ndarray:
    """The rank (0 = best) of every row of ``objectives`` (``[n, m]``, all minimised) in a
    non-dominated sort with an epsilon-net inside each front (see :class:`ParetoRankPriority`)."""
    objectives = np.asarray(objectives, dtype=float)
    ranks = np.empty(len(objectives), dtype=np.int64)
    remaining = np.arange(len(objectives))
    next_rank = 0
    while remaining.size:
        on_front = pareto_efficient(objectives[remaining])
        front = remaining[on_front]
        for position, row in enumerate(_spread_order(objectives[front], dim)):
            ranks[front[row]] = next_rank + position
        next_rank += len(front)
        remaining = remaining[~on_front]
    return ranks


def _spread_order(points: np.ndarray, dim: int) -> list[int]:
    """Farthest-first order of ``points``, starting from the lowest in objective ``dim``
    (the earliest row among ties): an epsilon-net (Clarkson 2005)."""
    first = int(np.argmin(points[:, dim]))
    order = [first]
    distance = np.linalg.norm(points - points[first], axis=1)  # to the nearest row taken
    distance[first] = -np.inf
    while len(order) < len(points):
        farthest = int(np.argmax(distance))
        order.append(farthest)
        distance = np.minimum(distance, np.linalg.norm(points - points[farthest], axis=1))
        distance[order] = -np.inf
    return order


class SeededMOASHA(MOASHA):
    """MO-ASHA over epochs that starts from an initial design and honours its seed.

    Schmucker, Donini, Perrone, Archambeau, "Multi-objective multi-fidelity hyperparameter
    optimization with application to fairness" (2021). Differences to Syne Tune's ``MOASHA``:

    - ``points_to_evaluate`` come first (``MOASHA`` takes none), so that every method starts
      from the same initial design;
    - random configs are drawn from a generator seeded with ``random_seed`` (``MOASHA``
      samples numpy's global generator), and a config whose ``config_key`` was suggested
      before is redrawn (up to ``max_retries`` times): in the ``small`` space every config with
      ``num_layers=0`` is the same sub-network, and fine-tuning it again is wasted time;
    - rungs rank results with :class:`ParetoRankPriority`.

    :param config_space: Syne Tune config space (constants are passed to every trial).
    :param metrics: Reported metrics, all minimised.
    :param max_t: Epochs of a trial that is never stopped.
    :param points_to_evaluate: Configs to start first, in order.
    :param time_attr: The reported resource, 1-based (``epoch``).
    :param config_key: What makes two configs the same candidate (e.g.
        ``SearchSpace.to_subnet``); default: the config itself.
    :param max_retries: How often to redraw a config that was suggested before.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        metrics: list[str],
        max_t: int,
        points_to_evaluate: list[Config] | None = None,
        grace_period: int = GRACE_PERIOD,
        reduction_factor: float = REDUCTION_FACTOR,
        time_attr: str = "epoch",
        random_seed: int | None = None,
        config_key: Callable[[Config], Hashable] | None = None,
        max_retries: int = 20,
    ):
        super().__init__(
            config_space,
            metrics=list(metrics),
            do_minimize=True,
            time_attr=time_attr,
            multiobjective_priority=ParetoRankPriority(),
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            random_seed=random_seed,
        )
        self.points_to_evaluate = [dict(p) for p in points_to_evaluate or []]
        self._encoder = ConfigEncoder(config_space)
        self._rng = np.random.default_rng(self.random_seed)
        self._config_key = config_key or (lambda config: self._encoder.key(self._encoder.encode(config)))
        self.max_retries = max_retries
        self._suggested: set[Hashable] = set()

    def suggest(self) -> TrialSuggestion | None:
        if self.points_to_evaluate:
            config = {**self._encoder.constants, **self.points_to_evaluate.pop(0)}
        else:
            config = self._sample()
            for _ in range(self.max_retries):
                if self._config_key(config) not in self._suggested:
                    break
                config = self._sample()
        self._suggested.add(self._config_key(config))
        return TrialSuggestion.start_suggestion(config)

    def on_trial_add(self, trial: Trial) -> None:
        # Trials of an earlier run of a resumed experiment are added without being suggested.
        self._suggested.add(self._config_key(trial.config))
        super().on_trial_add(trial)

    def _sample(self) -> Config:
        return self._encoder.decode(self._encoder.sample(self._rng))


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
