"""Multi-objective search over sub-networks with Syne Tune.

- :class:`NSGA2` and :class:`LocalSearch`: our Syne Tune searchers, usable in any ``Tuner``
  through ``SingleFidelityScheduler(..., searcher=NSGA2(config_space, ...))``;
- :func:`make_scheduler`: every method of :data:`METHODS` as a Syne Tune scheduler;
- :func:`run_ask_tell`: the in-process ask/tell loop of weight-sharing NAS.
"""

from nasprune.search.encoding import ConfigEncoder, SeededRandomSearcher, VectorSearcher
from nasprune.search.local_search import LocalSearch, ParetoArchive
from nasprune.search.loop import run_ask_tell
from nasprune.search.nsga2 import NSGA2
from nasprune.search.registry import METHODS, make_scheduler

__all__ = [
    "ConfigEncoder",
    "LocalSearch",
    "METHODS",
    "NSGA2",
    "ParetoArchive",
    "SeededRandomSearcher",
    "VectorSearcher",
    "make_scheduler",
    "run_ask_tell",
]
