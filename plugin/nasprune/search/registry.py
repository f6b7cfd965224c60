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
ehvi            Syne Tune's ``ExpectedHyperVolumeImprovement`` (BoTorch; ``nasprune[bo]``, also
                called ``nasprune[ehvi]``), single precision (see :func:`_make_ehvi`)
lsbo            :class:`~nasprune.search.scalarised_bo.LSBO`: linear scalarisation with equal
                weights, Bayesian optimisation (BoTorch; ``nasprune[bo]``)
rsbo            :class:`~nasprune.search.scalarised_bo.RSBO`: a random weighting of the augmented
                Chebyshev scalarisation per suggestion (ParEGO), Bayesian optimisation
moasha          :class:`~nasprune.search.multifidelity.SeededMOASHA`: MO-ASHA over the reported
                ``fidelity`` (validation fractions 1/9, 1/3, 1), random configs
=============== ================================================================================

With ``fidelities``, any of the single-fidelity methods runs behind MO-ASHA's rungs instead
(its searcher suggests, the rungs stop weak candidates early). ``lsbo`` and ``rsbo`` take
``searcher_kwargs`` such as ``weights`` (LSBO's fixed weights) and ``objective_bounds`` (for
metrics not in [0, 1]; nasprune's are).

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
from typing import Any, Callable, Hashable, Sequence

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
from nasprune.search.multifidelity import FIDELITY_ATTR, SeededMOASHA, fidelity_levels
from nasprune.search.nsga2 import NSGA2
from nasprune.search.scalarised_bo import LSBO, RSBO

logger = logging.getLogger(__name__)

METHODS = ("random_search", "morea", "local_search", "nsga2", "ehvi", "lsbo", "rsbo")
#: Every method of :func:`make_scheduler`: the single-fidelity ones and MO-ASHA.
SEARCH_METHODS = (*METHODS, "moasha")

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
    fidelities: Sequence[float] | None = None,
    config_key: Callable[[Config], Hashable] | None = None,
) -> TrialScheduler:
    """A Syne Tune scheduler that runs ``method`` over ``config_space``, minimising ``metrics``.

    :param method: One of :data:`SEARCH_METHODS`: a single-fidelity method of :data:`METHODS`,
        or ``moasha`` (multi-fidelity, random configs).
    :param config_space: Syne Tune config space (e.g. ``SearchSpace.config_space``).
    :param metrics: Names of the reported metrics, all minimised (two or more for a front).
    :param points_to_evaluate: Configs evaluated first, in order (e.g. ``space.initial_design()``).
    :param random_seed: Seed; None draws one.
    :param searcher_kwargs: Extra arguments for the searcher's constructor (e.g.
        ``num_restarts`` for EHVI, ``population_size`` for NSGA-II, ``weights`` for LSBO).
    :param fidelities: Multi-fidelity: the rungs, ascending to 1 (see
        :func:`~nasprune.search.multifidelity.fidelity_levels`; ``moasha`` defaults to
        1/9, 1/3, 1). The scheduler is then :class:`~nasprune.search.multifidelity.SeededMOASHA`
        over the reported ``fidelity``, with ``method``'s searcher in front of it (random
        configs for ``moasha``).
    :param config_key: Multi-fidelity: what makes two configs the same candidate (e.g.
        ``SearchSpace.to_subnet``), so that random configs are not repeated.
    :raises NaspruneError: For an unknown method, a missing optional dependency, or a
        space too large for a Gaussian process.
    """
    if method not in SEARCH_METHODS:
        raise NaspruneError(f"unknown search method '{method}'; choose one of: {', '.join(SEARCH_METHODS)}")
    if not metrics:
        raise NaspruneError("at least one metric is needed")
    if random_seed is None:
        random_seed = int(np.random.default_rng().integers(2**31 - 1))
    points = [dict(p) for p in points_to_evaluate or []]
    if method == "moasha" and fidelities is None:
        fidelities = fidelity_levels()
    if fidelities is not None:
        levels = [float(f) for f in fidelities]
        if not levels or levels != sorted(set(levels)) or levels[0] <= 0 or levels[-1] != 1.0:
            raise NaspruneError(f"fidelities must ascend from above 0 to 1, got {levels}")
        searcher = (
            None if method == "moasha" else make_searcher(method, config_space, points, random_seed, searcher_kwargs)
        )
        return SeededMOASHA(
            config_space, metrics, max_t=1.0, points_to_evaluate=points, grace_period=levels[0],
            time_attr=FIDELITY_ATTR, random_seed=random_seed, config_key=config_key, searcher=searcher,
            rung_levels=levels,
        )
    searcher = make_searcher(method, config_space, points, random_seed, searcher_kwargs)
    return SingleFidelityScheduler(
        config_space, metrics=list(metrics), do_minimize=True, searcher=searcher, random_seed=random_seed
    )


def make_searcher(
    method: str,
    config_space: dict[str, Any],
    points_to_evaluate: list[Config],
    random_seed: int,
    searcher_kwargs: dict[str, Any] | None = None,
) -> BaseSearcher:
    """The Syne Tune searcher of a single-fidelity ``method`` of :data:`METHODS` (see
    :func:`make_scheduler` for the arguments)."""
    if method not in METHODS:
        raise NaspruneError(f"'{method}' has no searcher; choose one of: {', '.join(METHODS)}")
    points = [dict(p) for p in points_to_evaluate]
    kwargs = dict(searcher_kwargs or {})
    if method == "random_search":
        return SeededRandomSearcher(config_space, points, random_seed=random_seed, **kwargs)
    if method == "local_search":
        return LocalSearch(config_space, points, random_seed=random_seed, **kwargs)
    if method == "nsga2":
        kwargs.setdefault("population_size", POPULATION_SIZE)
        return NSGA2(config_space, points, random_seed=random_seed, **kwargs)
    if method == "morea":
        return _make_morea(config_space, points, random_seed, kwargs)
    if method in ("lsbo", "rsbo"):
        _check_gp_space(method, config_space)
        _require_botorch(method, "bo")
        searcher_class = LSBO if method == "lsbo" else RSBO
        return searcher_class(config_space, points, random_seed=random_seed, **kwargs)
    return _make_ehvi(config_space, points, random_seed, kwargs)


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


def _require_botorch(method: str, extra: str) -> None:
    try:
        importlib.import_module("botorch")
    except ImportError:
        raise NaspruneError(f"the '{method}' method needs BoTorch: pip install 'nasprune[{extra}]'") from None


def _check_gp_space(method: str, config_space: dict[str, Any]) -> None:
    num_variables = sum(isinstance(d, Domain) for d in config_space.values())
    if num_variables > MAX_EHVI_VARIABLES:
        raise NaspruneError(
            f"the '{method}' method fits a Gaussian process over all {num_variables} variables, which "
            f"is infeasible above {MAX_EHVI_VARIABLES}; use a smaller search space (small, medium, "
            "layer) or another method (local_search, nsga2, morea, random_search)"
        )


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
    _check_gp_space("ehvi", config_space)
    # Syne Tune 0.16 builds the reference point and the candidates in float32; with its
    # default double-precision GP, BoTorch >= 0.18 fails with "expected scalar type Double
    # but found Float" on the first model-based suggestion. Single precision works.
    kwargs.setdefault("double_precision", False)
    return ExpectedHyperVolumeImprovement(
        config_space, points_to_evaluate=points, random_seed=seed, **kwargs
    )
