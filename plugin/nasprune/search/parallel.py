"""The ask/tell loop with several evaluations in flight (``--workers K`` of ``search`` and ``run``).

:func:`run_ask_tell_parallel` is :func:`nasprune.search.loop.run_ask_tell` for an evaluator that
measures up to ``capacity`` configs at once and hands the results back as they finish: it keeps
that many suggestions in flight and tells each result the moment it arrives, so the scheduler sees
results out of order (NSGA-II, local search, MO-REA, EHVI and random search all accept that). The
evaluator is anything with the :class:`EvaluationPool` methods; the Ray one is
:class:`nasprune.parallel_evaluation.ParallelSearchEvaluation`. This module stays light: no torch,
no Ray.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Hashable, Protocol

from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import TrialScheduler
from tqdm import tqdm

from nasprune.errors import NaspruneError
from nasprune.search.loop import StoppableAskTellScheduler, check_budget, check_metrics, config_key

logger = logging.getLogger(__name__)


class EvaluationPool(Protocol):
    """Evaluates configs concurrently; results come back in the order they finish."""

    @property
    def capacity(self) -> int:
        """How many configs it evaluates at once."""

    def submit(self, key: Hashable, config: dict[str, Any]) -> None:
        """Start evaluating ``config``; its result comes back from :meth:`next_result` under ``key``."""

    def next_result(self) -> tuple[Hashable, dict[str, float]]:
        """Wait for the next finished evaluation: its key and metrics."""


def run_ask_tell_parallel(
    scheduler: TrialScheduler,
    pool: EvaluationPool,
    num_samples: int,
    max_time: float | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Ask ``scheduler`` for configs, keep up to ``pool.capacity`` of them evaluating, tell each result
    as it arrives.

    Stops asking after ``num_samples`` trials, once ``max_time`` seconds have passed, or when the
    scheduler has no more suggestions; the evaluations in flight then finish and are told. As in
    :func:`~nasprune.search.loop.run_ask_tell`, a config already evaluated (or being evaluated) is
    not evaluated again: the new trial gets its metrics, marked ``cached``. With a capacity of 1 the
    trials, configs and records are those of ``run_ask_tell``.

    :return: One record per trial, in the order the results were told: ``trial_id``, ``config``,
        ``metrics``, ``elapsed`` (seconds since the start, when told) and ``cached``.
    """
    check_budget(num_samples, max_time)
    if pool.capacity < 1:
        raise NaspruneError(f"the evaluation pool needs a capacity of at least 1, got {pool.capacity}")
    ask_tell = StoppableAskTellScheduler(base_scheduler=scheduler)
    wanted = list(scheduler.metric_names()) if hasattr(scheduler, "metric_names") else []
    cache: dict[bytes, dict[str, float]] = {}
    # Configs being evaluated, each with the trials waiting for its result (the first submitted it).
    in_flight: dict[bytes, list[Trial]] = {}
    records: list[dict[str, Any]] = []
    asked = 0
    asking = True
    start = time.perf_counter()

    with tqdm(total=num_samples, disable=not progress, desc="search", unit="trial") as bar:

        def tell(trial: Trial, metrics: dict[str, float], cached: bool) -> None:
            ask_tell.tell(trial, dict(metrics))
            records.append(dict(trial_id=trial.trial_id, config=trial.config, metrics=dict(metrics),
                                elapsed=time.perf_counter() - start, cached=cached))
            bar.update(1)

        while True:
            while asking and asked < num_samples and len(in_flight) < pool.capacity:
                if max_time is not None and time.perf_counter() - start >= max_time:
                    logger.info("search stopped: time budget of %.1f s used", max_time)
                    asking = False
                    break
                trial = ask_tell.ask()
                if trial is None:
                    logger.info("search stopped: the scheduler has no more suggestions")
                    asking = False
                    break
                asked += 1
                key = config_key(trial.config)
                if key in cache:
                    tell(trial, cache[key], cached=True)
                elif key in in_flight:
                    in_flight[key].append(trial)
                else:
                    in_flight[key] = [trial]
                    pool.submit(key, dict(trial.config))
            if not in_flight:
                break
            key, metrics = pool.next_result()
            metrics = dict(metrics)
            check_metrics(metrics, wanted)
            cache[key] = metrics
            first, *waiting = in_flight.pop(key)
            tell(first, metrics, cached=False)
            for trial in waiting:
                tell(trial, metrics, cached=True)
    return records
