"""Multi-objective search over sub-networks with Syne Tune.

- :class:`NSGA2` and :class:`LocalSearch`: our Syne Tune searchers, usable in any ``Tuner``
  through ``SingleFidelityScheduler(..., searcher=NSGA2(config_space, ...))``; NSGA-II takes its
  :class:`Crossover` and :class:`Mutation` operators as arguments (pymoo's through
  :class:`PymooCrossover` and :class:`PymooMutation`);
- :class:`LSBO` and :class:`RSBO`: scalarised Bayesian optimisation (BoTorch, imported lazily);
- :func:`make_scheduler`: every method of :data:`SEARCH_METHODS` as a Syne Tune scheduler, and
  any of them behind MO-ASHA's rungs (:class:`SeededMOASHA`) when given ``fidelities``;
- :func:`run_ask_tell`: the in-process ask/tell loop of weight-sharing NAS, and
  :func:`run_multi_fidelity` its multi-fidelity counterpart.
"""

from nasprune.search.encoding import ConfigEncoder, SeededRandomSearcher, VectorSearcher
from nasprune.search.local_search import LocalSearch, ParetoArchive
from nasprune.search.loop import run_ask_tell
from nasprune.search.multifidelity import SeededMOASHA, fidelity_levels, run_multi_fidelity
from nasprune.search.nsga2 import NSGA2, Crossover, Mutation, PymooCrossover, PymooMutation, default_operators
from nasprune.search.registry import METHODS, SEARCH_METHODS, make_scheduler
from nasprune.search.scalarised_bo import LSBO, RSBO

__all__ = [
    "ConfigEncoder",
    "Crossover",
    "LSBO",
    "LocalSearch",
    "METHODS",
    "Mutation",
    "NSGA2",
    "ParetoArchive",
    "PymooCrossover",
    "PymooMutation",
    "RSBO",
    "SEARCH_METHODS",
    "SeededMOASHA",
    "SeededRandomSearcher",
    "VectorSearcher",
    "default_operators",
    "fidelity_levels",
    "make_scheduler",
    "run_ask_tell",
    "run_multi_fidelity",
]
