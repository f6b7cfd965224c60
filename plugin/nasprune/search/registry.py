"""The multi-objective search methods nasprune offers, as Syne Tune schedulers.

Every method minimises every metric (``do_minimize=True``: report errors, not accuracies),
starts from ``points_to_evaluate`` (nasprune passes the initial design: largest, smallest
and midpoint network), and honours ``random_seed``:

=============== ================================================================================
method          scheduler
=============== ================================================================================
random_search   :class:`~nasprune.search.encoding.SeededRandomSearcher` (Syne Tune's
                multi-objective random searcher samples numpy's global generator instead)
morea           Syne Tune's ``MultiObjectiveRegularizedEvolution``, population 10, sample size 5
                (Klein et al. 2024); its random phase ignores the seed, so the initial
                population is completed with seeded random configs in ``points_to_evaluate``
local_search    :class:`~nasprune.search.local_search.LocalSearch`
nsga2           :class:`~nasprune.search.nsga2.NSGA2`, population 10
ehvi            Syne Tune's ``ExpectedHyperVolumeImprovement`` (BoTorch; ``nasprune[ehvi]``),
                single precision (see :func:`_make_ehvi`)
=============== ================================================================================

Caveats of Syne Tune's EHVI, which we use as it is: it seeds torch's *global* generator with
``random_seed`` when constructed; when the GP fit fails it falls back to a random config
from numpy's global generator (so runs are not always reproducible); it never forgets a
failed trial (``on_trial_error`` is not implemented, the trial stays pending); and its
reference point is 2 for every *negated* objective (BoTorch maximises) without any
normalisation, i.e. -2 in the scheduler's minimised units: no error or relative size in
[0, 1] improves on it, so the acquisition rewards uncertainty more than the front (on a toy
problem it still beats random search).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np
from syne_tune.config_space import Domain
from syne_tune.optimizer.scheduler import TrialScheduler
from syne_tune.optimizer.schedulers.multiobjective.multi_objective_regularized_evolution import (
    MultiObjectiveRegularizedEvolution,
)
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nasprune.errors import NaspruneError
from nasprune.search.encoding import Config, ConfigEncoder, SeededRandomSearcher
from nasprune.search.local_search import LocalSearch
from nasprune.search.nsga2 import NSGA2

logger = logging.getLogger(__name__)

METHODS = ("random_search", "morea", "local_search", "nsga2", "ehvi")

#: Population and tournament sizes of MO-REA and the population of NSGA-II (Klein et al. 2024).
POPULATION_SIZE = 10
MOREA_SAMPLE_SIZE = 5

#: A Gaussian process over more inputs than this is slow and uninformative.
MAX_EHVI_VARIABLES = 1000


def make_scheduler(
    method: str,
    config_space: dict[str, Any],
    metrics: list[str],
    points_to_evaluate: list[Config] | None = None,
    random_seed: int | None = None,
    searcher_kwargs: dict[str, Any] | None = None,
) -> TrialScheduler:
    """A Syne Tune scheduler that runs ``method`` over ``config_space``, minimising ``metrics``.

    :param method: One of :data:`METHODS`.
    :param config_space: Syne Tune config space (e.g. ``SearchSpace.config_space``).
    :param metrics: Names of the reported metrics, all minimised (two or more for a front).
    :param points_to_evaluate: Configs evaluated first, in order (e.g. ``space.initial_design()``).
    :param random_seed: Seed; None draws one.
    :param searcher_kwargs: Extra arguments for the searcher's constructor (e.g.
        ``num_restarts`` for EHVI, ``population_size`` for NSGA-II).
    :raises NaspruneError: For an unknown method, a missing optional dependency, or a
        space too large for EHVI.
    """
    if method not in METHODS:
        raise NaspruneError(f"unknown search method '{method}'; choose one of: {', '.join(METHODS)}")
    if not metrics:
        raise NaspruneError("at least one metric is needed")
    if random_seed is None:
        random_seed = int(np.random.default_rng().integers(2**31 - 1))
    points = [dict(p) for p in points_to_evaluate or []]
    kwargs = dict(searcher_kwargs or {})
    searcher: BaseSearcher
    if method == "random_search":
        searcher = SeededRandomSearcher(config_space, points, random_seed=random_seed, **kwargs)
    elif method == "local_search":
        searcher = LocalSearch(config_space, points, random_seed=random_seed, **kwargs)
    elif method == "nsga2":
        kwargs.setdefault("population_size", POPULATION_SIZE)
        searcher = NSGA2(config_space, points, random_seed=random_seed, **kwargs)
    elif method == "morea":
        searcher = _make_morea(config_space, points, random_seed, kwargs)
    else:
        searcher = _make_ehvi(config_space, points, random_seed, kwargs)
    return SingleFidelityScheduler(
        config_space, metrics=list(metrics), do_minimize=True, searcher=searcher, random_seed=random_seed
    )


def _make_morea(
    config_space: dict[str, Any], points: list[Config], seed: int, kwargs: dict[str, Any]
) -> BaseSearcher:
    population_size = kwargs.setdefault("population_size", POPULATION_SIZE)
    kwargs.setdefault("sample_size", MOREA_SAMPLE_SIZE)
    # MO-REA draws its random initial population from numpy's global generator (it ignores
    # its seed there; only mutation is seeded). Handing it the random part of the initial
    # population as points_to_evaluate, drawn from our seeded generator, makes the whole
    # run reproducible without touching global state. When suggestions run ahead of results
    # (several workers), MO-REA may still sample unseeded configs.
    encoder = ConfigEncoder(config_space)
    rng = np.random.default_rng([seed, 1])
    padded = list(points)
    while len(padded) < population_size:
        padded.append(encoder.decode(encoder.sample(rng)))
    try:
        return MultiObjectiveRegularizedEvolution(
            config_space, points_to_evaluate=padded, random_seed=seed, **kwargs
        )
    except AssertionError as err:  # it asserts on a space with a single config
        raise NaspruneError(f"MO-REA cannot search this space: {err}") from None


def _make_ehvi(
    config_space: dict[str, Any], points: list[Config], seed: int, kwargs: dict[str, Any]
) -> BaseSearcher:
    try:
        # Syne Tune's module swallows a failed BoTorch import (it only logs it), so check here.
        importlib.import_module("botorch")
        from syne_tune.optimizer.schedulers.multiobjective.expected_hyper_volume_improvement import (
            ExpectedHyperVolumeImprovement,
        )
    except ImportError:
        raise NaspruneError(
            "the 'ehvi' method needs BoTorch: pip install 'nasprune[ehvi]'"
        ) from None
    num_variables = sum(isinstance(d, Domain) for d in config_space.values())
    if num_variables > MAX_EHVI_VARIABLES:
        raise NaspruneError(
            f"the 'ehvi' method fits a Gaussian process over all {num_variables} variables, which "
            f"is infeasible above {MAX_EHVI_VARIABLES}; use a smaller search space (small, medium, "
            "layer) or another method (local_search, nsga2, morea, random_search)"
        )
    # Syne Tune 0.16 builds the reference point and the candidates in float32; with its
    # default double-precision GP, BoTorch >= 0.18 fails with "expected scalar type Double
    # but found Float" on the first model-based suggestion. Single precision works.
    kwargs.setdefault("double_precision", False)
    return ExpectedHyperVolumeImprovement(
        config_space, points_to_evaluate=points, random_seed=seed, **kwargs
    )
