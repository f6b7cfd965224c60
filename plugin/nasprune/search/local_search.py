"""Multi-objective local search over a Pareto archive, as a Syne Tune searcher.

Klein et al. (2024), "Structural Pruning of Pre-trained Language Models via Neural
Architecture Search" (TMLR 2024): starting from the initial design, repeatedly take a random
member of the current Pareto set and change one of its variables. This is the simple
Pareto local search of Paquete, Chiarandini and Stützle, "Pareto Local Optimum Sets in the
Biobjective Traveling Salesman Problem" (2004), with a random rather than an exhaustive
neighbourhood.

Two defects of the public reference implementation are fixed here: the seed is honoured
(every random choice comes from one seeded generator), and points of equal cost no longer
evict each other (which made the archive thrash on plateaus).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nasprune.search.encoding import Config, VectorSearcher


@dataclass
class ArchiveEntry:
    """A Pareto-optimal evaluated config: internal vector, objectives (lower is better), key."""

    x: np.ndarray
    f: np.ndarray
    key: bytes


class ParetoArchive:
    """The non-dominated configs seen so far (minimisation of every objective).

    Insertion rules, which keep the archive free of dominated points and stable:

    - a point dominated by a member is rejected;
    - a point with exactly the cost of a member is rejected: the first one found stays, so
      equal-cost points never evict each other (no thrashing between them) and plateaus of
      equivalent configs do not flood the archive;
    - otherwise the point enters and every member it dominates leaves.
    """

    def __init__(self) -> None:
        self.entries: list[ArchiveEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def costs(self) -> np.ndarray:
        return np.stack([e.f for e in self.entries]) if self.entries else np.zeros((0, 0))

    def add(self, entry: ArchiveEntry) -> bool:
        """Insert ``entry`` if it is non-dominated and of a new cost; return whether it entered."""
        if not self.entries:
            self.entries.append(entry)
            return True
        F = self.costs
        f = entry.f
        weakly_better = np.all(F <= f, axis=1)  # members at least as good everywhere
        if np.any(weakly_better):
            return False  # dominated by, or of equal cost to, a member
        dominated = np.all(f <= F, axis=1) & np.any(f < F, axis=1)
        self.entries = [e for e, gone in zip(self.entries, dominated) if not gone]
        self.entries.append(entry)
        return True


class LocalSearch(VectorSearcher):
    """Multi-objective local search (Klein et al. 2024): mutate one variable of a random
    member of the Pareto archive.

    Suggests ``points_to_evaluate`` first; until the first result arrives it samples random
    configs. Every completed trial updates the archive (see :class:`ParetoArchive`). A mutant
    that was already suggested is redrawn (from a new random archive member) up to
    ``max_retries`` times, then a random config is tried, so the search does not stall once
    the neighbourhood of the archive is exhausted.

    :param config_space: Syne Tune config space.
    :param points_to_evaluate: Configs to suggest first (e.g. largest, smallest, midpoint).
    :param random_seed: Seed of all random choices.
    :param max_retries: How often to redraw a mutant that was already suggested.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        max_retries: int = 50,
    ):
        super().__init__(config_space, points_to_evaluate, random_seed, max_retries=max_retries)
        self.archive = ParetoArchive()

    def suggest(self, **kwargs) -> Config | None:
        point = self._next_initial_point()
        if point is not None:
            return point
        if not self.archive.entries:
            return self._emit(self._sample_new())
        for _ in range(self.max_retries):
            parent = self.archive.entries[int(self.rng.integers(len(self.archive)))]
            child = self.encoder.mutate_one(parent.x, self.rng)
            if self._is_new(self.encoder.key(child)):
                return self._emit(child)
        return self._emit(self._sample_new())

    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        x, key = self._record_completion(trial_id, config)
        f = np.asarray(metrics, dtype=float).ravel()
        if np.all(np.isfinite(f)):  # a failed evaluation reported as NaN/inf is not a trade-off
            self.archive.add(ArchiveEntry(x=x, f=f, key=key))
