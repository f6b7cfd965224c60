"""An in-process ask/tell loop over any Syne Tune scheduler.

Weight-sharing NAS evaluates a candidate with one no-grad pass over the validation split, so
the search needs no trial processes: ask the scheduler for a config, evaluate it in this
process, tell the result (Syne Tune's :class:`AskTellScheduler`).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import pickle
import time
from typing import Any, Callable

from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import TrialScheduler
from syne_tune.optimizer.schedulers.ask_tell_scheduler import AskTellScheduler
from tqdm import tqdm

from nasprune.errors import NaspruneError

logger = logging.getLogger(__name__)


class StoppableAskTellScheduler(AskTellScheduler):
    """:class:`AskTellScheduler` whose :meth:`ask` returns None when the scheduler has no more
    suggestions (Syne Tune's version fails with an ``AttributeError`` on ``None.config``)."""

    def ask(self) -> Trial | None:
        suggestion = self.base_scheduler.suggest()
        if suggestion is None:
            return None
        trial = Trial(
            trial_id=self.trial_counter,
            config=suggestion.config,
            creation_time=datetime.datetime.now(),
        )
        self.trial_counter += 1
        return trial


def config_key(config: dict[str, Any]) -> bytes:
    """An exact, compact key of a config (a digest: large-space configs have 37k entries)."""
    return hashlib.blake2b(pickle.dumps(tuple(config.items()), protocol=4), digest_size=16).digest()


def run_ask_tell(
    scheduler: TrialScheduler,
    evaluate: Callable[[dict[str, Any]], dict[str, float]],
    num_samples: int,
    max_time: float | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Ask ``scheduler`` for configs, ``evaluate`` them in-process and tell the results.

    Stops after ``num_samples`` trials, once ``max_time`` seconds have passed (checked before
    each ask, so the trial running at the deadline completes), or when the scheduler has no
    more suggestions. A config that was already evaluated is not evaluated again: its
    cached metrics are told for the new trial (which still counts towards ``num_samples``,
    so a searcher stuck on known configs cannot loop forever).

    :param scheduler: A Syne Tune scheduler, e.g. from :func:`nasprune.search.registry.make_scheduler`.
    :param evaluate: Maps a config to its metrics; must return every metric the scheduler optimises.
    :param num_samples: Maximum number of trials.
    :param max_time: Wall-clock budget in seconds (positive and finite), or None.
    :param progress: Show a tqdm progress bar.
    :return: One record per trial, in order: ``trial_id``, ``config``, ``metrics`` (as
        returned by ``evaluate``), ``elapsed`` (seconds since the start, when the result was
        told) and ``cached`` (whether the metrics came from the cache).
    """
    check_budget(num_samples, max_time)
    ask_tell = StoppableAskTellScheduler(base_scheduler=scheduler)
    # ``metric_names`` is not part of the base TrialScheduler: check metrics where we can.
    wanted = list(scheduler.metric_names()) if hasattr(scheduler, "metric_names") else []
    cache: dict[bytes, dict[str, float]] = {}
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tqdm(total=num_samples, disable=not progress, desc="search", unit="trial") as bar:
        while len(records) < num_samples:
            if max_time is not None and time.perf_counter() - start >= max_time:
                logger.info("search stopped: time budget of %.1f s used", max_time)
                break
            trial = ask_tell.ask()
            if trial is None:
                logger.info("search stopped: the scheduler has no more suggestions")
                break
            key = config_key(trial.config)
            cached = key in cache
            if cached:
                metrics = cache[key]
            else:
                metrics = dict(evaluate(dict(trial.config)))
                check_metrics(metrics, wanted)
                cache[key] = metrics
            ask_tell.tell(trial, dict(metrics))
            records.append(
                dict(
                    trial_id=trial.trial_id,
                    config=trial.config,
                    metrics=dict(metrics),
                    elapsed=time.perf_counter() - start,
                    cached=cached,
                )
            )
            bar.update(1)
    return records


def check_budget(num_samples: int, max_time: float | None) -> None:
    """Refuse a negative number of samples and a time budget that is not a positive, finite number."""
    if num_samples < 0:
        raise NaspruneError(f"num_samples must be non-negative, got {num_samples}")
    # NaN compares false with everything: "elapsed >= nan" would never stop the search.
    if max_time is not None and not (math.isfinite(max_time) and max_time > 0):
        raise NaspruneError(f"max_time must be a positive, finite number of seconds, got {max_time}")


def check_metrics(metrics: dict[str, float], wanted: list[str]) -> None:
    """Refuse metrics that lack one the scheduler optimises or are not numbers; warn on non-finite ones."""
    missing = [name for name in wanted if name not in metrics]
    if missing:
        raise NaspruneError(
            f"evaluate() returned {sorted(metrics)}, but the scheduler optimises {wanted}: "
            f"missing {missing}"
        )
    for name in wanted:
        try:
            value = float(metrics[name])
        except (TypeError, ValueError):
            raise NaspruneError(f"metric '{name}' is not a number: {metrics[name]!r}") from None
        if not math.isfinite(value):
            logger.warning("metric '%s' is %s for this config", name, value)
