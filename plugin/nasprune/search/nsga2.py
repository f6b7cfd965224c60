"""Asynchronous, steady-state NSGA-II as a Syne Tune searcher.

Reference:

    | Deb, K., Pratap, A., Agarwal, S., and Meyarivan, T.
    | A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II.
    | IEEE Transactions on Evolutionary Computation 6(2), 182-197, 2002.

Syne Tune 0.16 no longer ships NSGA-II. Generational NSGA-II waits for a whole generation of
evaluations; a tuner with several workers (or one asking for suggestions before results
arrive) needs a steady-state variant instead (one child per :meth:`NSGA2.suggest`,
survival after every result), in the spirit of Durillo et al., "On the effect of the
steady-state selection scheme in multi-objective genetic algorithms" (EMO 2009).

The variation operators are constructor arguments, as in pymoo's ``NSGA2(crossover=..., mutation=...)``:
any :class:`Crossover` and :class:`Mutation` (pymoo's own through :class:`PymooCrossover` and
:class:`PymooMutation`). They act on the internal vector of
:class:`~nasprune.search.encoding.ConfigEncoder` (integral coordinates are rounded afterwards). The
defaults are pymoo's SBX crossover and polynomial mutation, or uniform crossover and bit-flip
mutation when every variable is a bit, as in nasprune's ``layer`` and ``large`` spaces. Ranking
uses pymoo's non-dominated sorting and crowding distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.operators.mutation.bitflip import BitflipMutation
from pymoo.operators.mutation.pm import PM
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nasprune.search.encoding import Config, VectorSearcher


@dataclass
class Individual:
    """An evaluated member of the population: internal vector, objectives (lower is better), key."""

    x: np.ndarray
    f: np.ndarray
    key: bytes


def rank_and_crowding(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto rank (0 = non-dominated) and crowding distance within the rank of each row of ``F``.

    Deb et al. (2002), §III-A and §III-B; boundary points of a front get an infinite distance.
    """
    n = len(F)
    rank = np.zeros(n, dtype=np.int64)
    crowding = np.zeros(n)
    if n == 0:
        return rank, crowding
    for r, front in enumerate(NonDominatedSorting().do(F)):
        rank[front] = r
        crowding[front] = calc_crowding_distance(F[front]) if len(front) > 2 else np.inf
    return rank, crowding


def survivors(F: np.ndarray, size: int) -> np.ndarray:
    """Indices of the ``size`` best rows of ``F``: whole fronts first, then the least crowded
    points of the front that does not fit (Deb et al. 2002, §III-C). Ties keep the older row."""
    if len(F) <= size:
        return np.arange(len(F))
    rank, crowding = rank_and_crowding(F)
    # lexsort sorts by the last key first; it is stable, so equal points keep insertion order.
    order = np.lexsort((-crowding, rank))
    return np.sort(order[:size])


# --- variation operators --------------------------------------------------------------------
class Crossover(Protocol):
    """Mates two parents into one or more children.

    ``parents`` is a ``(2, n)`` array of the free coordinates of two internal vectors (see
    :class:`~nasprune.search.encoding.ConfigEncoder`), each within ``[lower, upper]``. The result is a
    ``(k, n)`` array of ``k >= 1`` children in the same coordinates; NSGA-II mutates one of them.
    Draw every random number from ``rng``, so that a seeded search repeats itself.
    """

    def __call__(
        self, parents: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...


class Mutation(Protocol):
    """Perturbs one child: ``(n,)`` free coordinates within ``[lower, upper]`` in, ``(n,)`` out.

    Integral coordinates may come out fractional: NSGA-II rounds them afterwards.
    """

    def __call__(
        self, child: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...


@dataclass
class _PymooOperator:
    """A pymoo operator, and whether it works on bits: what the two adapters below share."""

    operator: Any
    bits: bool = False

    def _apply(
        self, genes: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator, **kwargs: Any
    ) -> np.ndarray:
        """The operator on the rows of ``genes``; booleans in and out where ``bits``."""
        population = Population.new("X", genes > lower if self.bits else genes)
        # pymoo's operators read the bounds (and the number of variables) from a Problem.
        problem = Problem(n_var=len(lower), xl=lower, xu=upper)
        out = self.operator.do(problem, population, random_state=rng, **kwargs).get("X")
        return lower + out if self.bits else out


class PymooCrossover(_PymooOperator):
    """A pymoo crossover (``SBX``, ``UniformCrossover`` ...) as a :class:`Crossover`:
    ``PymooCrossover(operator, bits=False)``.

    ``bits``: the operator takes booleans (pymoo's binary operators); a coordinate above ``lower``
    is a 1.
    """

    def __call__(
        self, parents: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self._apply(parents, lower, upper, rng, parents=np.array([[0, 1]]))


class PymooMutation(_PymooOperator):
    """A pymoo mutation (``PM``, ``BitflipMutation`` ...) as a :class:`Mutation`:
    ``PymooMutation(operator, bits=False)``, ``bits`` as in :class:`PymooCrossover`."""

    def __call__(
        self, child: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self._apply(child[None], lower, upper, rng)[0]


def default_operators(
    binary: bool, crossover_probability: float = 0.9, eta_crossover: float = 15.0, eta_mutation: float = 20.0
) -> tuple[Crossover, Mutation]:
    """NSGA-II's default operators: uniform crossover and bit-flip mutation on a space of bits
    (``binary``), else SBX crossover and polynomial mutation with these distribution indices."""
    if binary:
        return (
            PymooCrossover(UniformCrossover(prob=crossover_probability), bits=True),
            PymooMutation(BitflipMutation(prob=1.0), bits=True),
        )
    return (
        PymooCrossover(SBX(prob=crossover_probability, eta=eta_crossover)),
        PymooMutation(PM(prob=1.0, eta=eta_mutation)),
    )


class NSGA2(VectorSearcher):
    """Steady-state NSGA-II (Deb et al. 2002) for any Syne Tune config space.

    Use it in a Syne Tune ``Tuner`` like any multi-objective searcher::

        scheduler = SingleFidelityScheduler(
            config_space, metrics=["error", "size"], do_minimize=True,
            searcher=NSGA2(config_space, points_to_evaluate=initial_design, random_seed=0),
        )

    The initial population is ``points_to_evaluate`` followed by random configs, until
    ``population_size`` configs were suggested and are not known to have failed. Afterwards
    each :meth:`suggest` picks two parents from the evaluated population by binary tournament
    (lower rank wins, then larger crowding distance), applies crossover and mutation, and
    returns one child. :meth:`on_trial_complete` inserts a result and truncates the population
    to ``population_size`` by rank and crowding. Results may arrive in any order while other
    trials are pending; suggestions before any result has arrived are random.

    With the same seed and the same sequence of calls, suggestions are identical.

    :param config_space: Syne Tune config space.
    :param points_to_evaluate: Configs to suggest first (e.g. largest, smallest, midpoint).
    :param population_size: Number of survivors kept, defaults to 10.
    :param random_seed: Seed of all random choices.
    :param crossover_probability: Probability that a mating applies crossover (default crossover).
    :param eta_crossover: Distribution index of SBX (larger: children closer to parents).
    :param eta_mutation: Distribution index of polynomial mutation.
    :param max_retries: How often to redo variation when it yields a config already suggested.
    :param crossover: The crossover operator; default: see :func:`default_operators` (which the
        three parameters above configure).
    :param mutation: The mutation operator; default: see :func:`default_operators`.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        population_size: int = 10,
        random_seed: int | None = None,
        crossover_probability: float = 0.9,
        eta_crossover: float = 15.0,
        eta_mutation: float = 20.0,
        max_retries: int = 20,
        crossover: Crossover | None = None,
        mutation: Mutation | None = None,
    ):
        super().__init__(config_space, points_to_evaluate, random_seed, max_retries=max_retries)
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        self.population_size = population_size
        self.population: list[Individual] = []
        # Operators see only the free coordinates: pymoo divides by (xu - xl) in places.
        self._free = np.flatnonzero(self.encoder.free)
        default_crossover, default_mutation = default_operators(
            self.encoder.is_binary, crossover_probability, eta_crossover, eta_mutation
        )
        self.crossover: Crossover = crossover or default_crossover
        self.mutation: Mutation = mutation or default_mutation
        self._rank: np.ndarray | None = None
        self._crowding: np.ndarray | None = None

    # --- suggest ------------------------------------------------------------------------
    def suggest(self, **kwargs) -> Config | None:
        point = self._next_initial_point()
        if point is not None:
            return point
        still_filling = self.num_completed + self.num_pending < self.population_size
        if not self.population or still_filling or len(self._free) == 0:
            return self._emit(self._sample_new())
        child = self._variation()
        for _ in range(self.max_retries):
            if self._is_new(self.encoder.key(child)):
                break
            child = self._variation()
        else:
            # Operators keep reproducing known configs (a converged population): a one-variable
            # step from the child, or else a random config, keeps the search moving.
            child = self.encoder.mutate_one(child, self.rng)
            if not self._is_new(self.encoder.key(child)):
                child = self._sample_new()
        return self._emit(child)

    def _tournament(self) -> int:
        """Binary tournament by (rank, crowding distance), Deb et al. (2002) crowded comparison."""
        n = len(self.population)
        i, j = self.rng.choice(n, size=2, replace=n < 2)
        if self._rank[i] != self._rank[j]:
            return int(i if self._rank[i] < self._rank[j] else j)
        if self._crowding[i] != self._crowding[j]:
            return int(i if self._crowding[i] > self._crowding[j] else j)
        return int(i)

    def _variation(self) -> np.ndarray:
        """One child: tournament selection, crossover, mutation, rounding."""
        parents = [self.population[self._tournament()].x, self.population[self._tournament()].x]
        genes = np.stack([p[self._free] for p in parents])
        lower, upper = self.encoder.lower[self._free], self.encoder.upper[self._free]
        children = self.crossover(genes, lower, upper, self.rng)
        # SBX and UX return two children; either one is a fair draw.
        chosen = children[int(self.rng.integers(len(children)))]
        child = parents[0].copy()
        child[self._free] = self.mutation(chosen, lower, upper, self.rng)
        return self.encoder.canonical(child)

    # --- results ------------------------------------------------------------------------
    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        x, key = self._record_completion(trial_id, config)
        f = np.asarray(metrics, dtype=float).ravel()
        if not np.all(np.isfinite(f)):
            return  # a failed evaluation reported as NaN/inf must not steer the search
        if any(member.key == key for member in self.population):
            return  # the same config told again (e.g. from a cache) would only cost diversity
        self.population.append(Individual(x=x, f=f, key=key))
        F = np.stack([member.f for member in self.population])
        keep = survivors(F, self.population_size)
        self.population = [self.population[i] for i in keep]
        self._rank, self._crowding = rank_and_crowding(F[keep])
