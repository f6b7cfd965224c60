"""Multi-fidelity search: MO-ASHA, its Pareto-rank rungs, nested fidelities, and an in-process loop.

Schmucker, Donini, Perrone, Archambeau, "Multi-objective multi-fidelity hyperparameter
optimization with application to fairness" (2021): asynchronous successive halving whose rungs
rank results by Pareto rank. A trial that reaches a rung continues only if it ranks in the best
``1 / reduction_factor`` of the results recorded at that rung so far (the first result of a
rung always continues); otherwise it stops there.

The same scheduler, :class:`SeededMOASHA`, serves both kinds of search:

- standard NAS (:mod:`nasprune.snas`): the resource is the fine-tuning epoch;
- weight-sharing search (``nasprune search --method moasha``): the resource is the
  *fidelity*, the fraction of the validation split a candidate is evaluated on. The subsets are
  nested prefixes of one seeded permutation (:func:`nested_subsets`), so a promoted candidate is
  measured on a superset of what it was ranked on. :func:`run_multi_fidelity` is the
  in-process ask/tell loop; every evaluation (trial, fidelity) is one record.

With a ``searcher`` (any Syne Tune searcher, e.g. NSGA-II or LSBO), :class:`SeededMOASHA` asks
it for new configs instead of sampling at random (``--multi-fidelity`` in front of a
single-fidelity method). The searcher learns from a trial's last result: the full-fidelity one
for a trial that got through every rung, the low-fidelity one for a trial stopped early (it
is worse evidence, but it tells the searcher that the config was tried and was not among the
best, and it is never suggested again).

This module stays light: numpy and Syne Tune, no torch.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from typing import Any, Callable, Hashable, Sequence

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import SchedulerDecision, TrialSuggestion
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from tqdm import tqdm

from nasprune.errors import NaspruneError
from nasprune.search.encoding import Config, ConfigEncoder
from nasprune.search.loop import check_budget, check_metrics, config_key

logger = logging.getLogger(__name__)

#: MO-ASHA's rungs: the first after one unit of resource, then every factor of 3.
GRACE_PERIOD = 1
REDUCTION_FACTOR = 3
#: The smallest validation fraction of the weight-sharing MO-ASHA: 1/9, 1/3, all of it.
MIN_FIDELITY = 1 / 9
#: The resource a weight-sharing trial reports: the fraction of the validation split.
FIDELITY_ATTR = "fidelity"


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
    """MO-ASHA that starts from an initial design, honours its seed, and may take a searcher.

    Differences to Syne Tune's ``MOASHA``:

    - ``points_to_evaluate`` come first (``MOASHA`` takes none), so that every method starts
      from the same initial design;
    - new configs come from ``searcher`` when one is given; otherwise they are drawn from a
      generator seeded with ``random_seed`` (``MOASHA`` samples numpy's global generator), and a
      config whose ``config_key`` was suggested before is redrawn (up to ``max_retries``
      times): in the ``small`` space every config with ``num_layers=0`` is the same
      sub-network, and evaluating it again is wasted time;
    - rungs rank results with :class:`ParetoRankPriority`;
    - ``rung_levels`` may set the rungs exactly (Syne Tune derives them with a logarithm whose
      round-off can drop the last rung, e.g. for ``max_t = 3**5``).

    :param config_space: Syne Tune config space (constants are passed to every trial).
    :param metrics: Reported metrics, all minimised.
    :param max_t: The resource of a trial that is never stopped.
    :param points_to_evaluate: Configs to start first, in order (handed to ``searcher`` when
        there is one, so that its trial ids count its own suggestions).
    :param time_attr: The reported resource (``epoch``; ``fidelity`` in weight-sharing search).
    :param config_key: What makes two configs the same candidate (e.g.
        ``SearchSpace.to_subnet``); default: the config itself.
    :param max_retries: How often to redraw a config that was suggested before.
    :param searcher: Where new configs come from; None: seeded random sampling.
    :param rung_levels: The resources at which trials are ranked, ascending, ``max_t`` last.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        metrics: list[str],
        max_t: float,
        points_to_evaluate: list[Config] | None = None,
        grace_period: float = GRACE_PERIOD,
        reduction_factor: float = REDUCTION_FACTOR,
        time_attr: str = "epoch",
        random_seed: int | None = None,
        config_key: Callable[[Config], Hashable] | None = None,
        max_retries: int = 20,
        searcher: BaseSearcher | None = None,
        rung_levels: Sequence[float] | None = None,
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
        if rung_levels is not None:
            levels = [float(level) for level in rung_levels]
            if levels != sorted(levels) or levels[-1] != max_t:
                raise NaspruneError(f"rung levels must ascend to max_t={max_t}, got {levels}")
            self.brackets[0].rungs = [(level, {}) for level in reversed(levels)]
        self.searcher = searcher
        self.points_to_evaluate = [] if searcher is not None else [dict(p) for p in points_to_evaluate or []]
        self._encoder = ConfigEncoder(config_space)
        self._rng = np.random.default_rng(self.random_seed)
        self._config_key = config_key or (lambda config: self._encoder.key(self._encoder.encode(config)))
        self.max_retries = max_retries
        self._suggested: set[Hashable] = set()
        self._last_metrics: dict[int, list[float]] = {}
        self._configs: dict[int, Config] = {}

    def suggest(self) -> TrialSuggestion | None:
        if self.searcher is not None:
            config = self.searcher.suggest()
            if config is None:
                return None
            config = {**self._encoder.constants, **config}
        elif self.points_to_evaluate:
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
        self._configs[trial.trial_id] = dict(trial.config)
        super().on_trial_add(trial)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        decision = super().on_trial_result(trial, result)
        if self.searcher is not None:
            metrics = [float(result[name]) for name in self.metrics]
            self._last_metrics[trial.trial_id] = metrics
            self.searcher.on_trial_result(trial.trial_id, self._configs.get(trial.trial_id, trial.config), metrics)
        return decision

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        super().on_trial_complete(trial, result)
        if self.searcher is not None:
            self._last_metrics.pop(trial.trial_id, None)
            metrics = [float(result[name]) for name in self.metrics]
            self.searcher.on_trial_complete(trial.trial_id, self._configs.pop(trial.trial_id, trial.config), metrics)

    def on_trial_remove(self, trial: Trial) -> None:
        # Stopped at a rung: the searcher learns the trial's last (low-fidelity) result.
        super().on_trial_remove(trial)
        metrics = self._last_metrics.pop(trial.trial_id, None)
        config = self._configs.pop(trial.trial_id, trial.config)
        if self.searcher is not None and metrics is not None:
            self.searcher.on_trial_complete(trial.trial_id, config, metrics)

    def on_trial_error(self, trial: Trial) -> None:
        self.trial_info.pop(trial.trial_id, None)
        self._last_metrics.pop(trial.trial_id, None)
        self._configs.pop(trial.trial_id, None)
        if self.searcher is not None:
            self.searcher.on_trial_error(trial.trial_id)

    def _sample(self) -> Config:
        return self._encoder.decode(self._encoder.sample(self._rng))


# --- fidelities of the weight-sharing search ------------------------------------------------------
def fidelity_levels(min_fidelity: float = MIN_FIDELITY, reduction_factor: float = REDUCTION_FACTOR) -> list[float]:
    """The validation fractions of MO-ASHA's rungs, ascending, ending at 1: ``reduction_factor``
    to the powers ``-K .. 0``, with ``K`` the most that keeps the first at or above
    ``min_fidelity`` (up to round-off). ``(1/9, 3)`` gives ``[1/9, 1/3, 1]``.

    :raises NaspruneError: for a fidelity outside (0, 1] or a reduction factor not above 1.
    """
    if not (math.isfinite(min_fidelity) and 0 < min_fidelity <= 1):
        raise NaspruneError(f"--min-fidelity must be in (0, 1], got {min_fidelity}")
    if not (math.isfinite(reduction_factor) and reduction_factor > 1):
        raise NaspruneError(f"--reduction-factor must be greater than 1, got {reduction_factor}")
    num_rungs = int(math.floor(math.log(1 / min_fidelity) / math.log(reduction_factor) + 1e-9))
    return [float(reduction_factor ** -k) for k in range(num_rungs, 0, -1)] + [1.0]


def nested_subsets(num_examples: int, fidelities: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """For each fidelity below 1, the example indices it is evaluated on: the first
    ``ceil(fidelity * num_examples)`` (at least one) of one permutation seeded with ``seed``,
    sorted. The subsets are nested: a higher fidelity's contains every lower one's."""
    permutation = np.random.default_rng([seed, num_examples]).permutation(num_examples)
    subsets = {}
    for fidelity in fidelities:
        if fidelity < 1:
            size = max(1, math.ceil(round(fidelity * num_examples, 9)))
            subsets[fidelity] = np.sort(permutation[:size])
    return subsets


def run_multi_fidelity(
    scheduler: SeededMOASHA,
    evaluate: Callable[[Config, float], dict[str, float]],
    fidelities: Sequence[float],
    num_samples: int,
    max_time: float | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run a multi-fidelity scheduler in-process: each trial is evaluated at the lowest fidelity,
    then at each next one for as long as the scheduler lets it continue.

    One worker, so every decision is asynchronous successive halving's: a trial is ranked
    against the results its rung holds when it arrives. A config evaluated before at a fidelity
    is not evaluated again (its metrics are reused).

    :param scheduler: A scheduler whose resource attribute is :data:`FIDELITY_ATTR`, e.g. from
        :func:`nasprune.search.registry.make_scheduler` with ``fidelities``.
    :param evaluate: ``evaluate(config, fidelity)``: the metrics of ``config`` on that fraction.
    :param fidelities: The rungs, ascending, ending at 1 (see :func:`fidelity_levels`).
    :param num_samples: Maximum number of trials (candidates started; each may take several
        evaluations).
    :param max_time: Wall-clock budget in seconds, checked before each new trial.
    :param progress: Show a tqdm progress bar.
    :return: One record per evaluation, in order: ``trial_id``, ``config``, ``fidelity``,
        ``metrics``, ``elapsed``, ``cached`` and ``promoted`` (the scheduler let the trial go on
        to the next fidelity).
    """
    check_budget(num_samples, max_time)
    fidelities = [float(f) for f in fidelities]
    wanted = list(scheduler.metric_names())
    cache: dict[tuple[bytes, float], dict[str, float]] = {}
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    num_trials = 0
    with tqdm(total=num_samples, disable=not progress, desc="search", unit="trial") as bar:
        while num_trials < num_samples:
            if max_time is not None and time.perf_counter() - start >= max_time:
                logger.info("search stopped: time budget of %.1f s used", max_time)
                break
            suggestion = scheduler.suggest()
            if suggestion is None:
                logger.info("search stopped: the scheduler has no more suggestions")
                break
            trial = Trial(trial_id=num_trials, config=suggestion.config, creation_time=datetime.datetime.now())
            num_trials += 1
            scheduler.on_trial_add(trial)
            key = config_key(trial.config)
            for fidelity in fidelities:
                cached = (key, fidelity) in cache
                if cached:
                    metrics = cache[(key, fidelity)]
                else:
                    metrics = dict(evaluate(dict(trial.config), fidelity))
                    check_metrics(metrics, wanted)
                    cache[(key, fidelity)] = metrics
                result = {**metrics, FIDELITY_ATTR: fidelity}
                last = fidelity >= fidelities[-1]
                promoted = not last and scheduler.on_trial_result(trial, result) == SchedulerDecision.CONTINUE
                records.append(
                    dict(
                        trial_id=trial.trial_id, config=trial.config, fidelity=fidelity, metrics=dict(metrics),
                        elapsed=time.perf_counter() - start, cached=cached, promoted=promoted,
                    )
                )
                if last:
                    scheduler.on_trial_complete(trial, result)
                    break
                if not promoted:
                    scheduler.on_trial_remove(trial)
                    break
            bar.update(1)
    return records
