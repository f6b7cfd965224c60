"""Multi-objective search over sub-networks with Syne Tune.

- :class:`NSGA2` and :class:`LocalSearch`: our Syne Tune searchers, usable in any ``Tuner``
  through ``SingleFidelityScheduler(..., searcher=NSGA2(config_space, ...))``; NSGA-II takes its
  :class:`Crossover` and :class:`Mutation` operators as arguments (pymoo's through
  :class:`PymooCrossover` and :class:`PymooMutation`);
- :func:`make_scheduler`: every method of :data:`METHODS` as a Syne Tune scheduler;
- :func:`run_ask_tell`: the in-process ask/tell loop of weight-sharing NAS.
"""

from nasprune.search.encoding import ConfigEncoder, SeededRandomSearcher, VectorSearcher
from nasprune.search.local_search import LocalSearch, ParetoArchive
from nasprune.search.loop import run_ask_tell
from nasprune.search.nsga2 import NSGA2, Crossover, Mutation, PymooCrossover, PymooMutation, default_operators
from nasprune.search.registry import METHODS, make_scheduler

__all__ = [
    "ConfigEncoder",
    "Crossover",
    "LocalSearch",
    "METHODS",
    "Mutation",
    "NSGA2",
    "ParetoArchive",
    "PymooCrossover",
    "PymooMutation",
    "SeededRandomSearcher",
    "VectorSearcher",
    "default_operators",
    "make_scheduler",
    "run_ask_tell",
]
