"""``nasprune compare``: hypervolumes, ranks, curves and tables over any set of runs.

A *run* is a folder with ``results.csv`` and ``summary.json``, as written by ``nasprune search``,
``run``, standard NAS and ``nasprune baseline``. Runs are grouped into *methods* (by default the
kind of run and its method: ``ws/nsga2``, ``snas/moasha``, ``baseline/rfp``) and compared per task.

One concept per module:

- :mod:`~nasprune.report.runs`: loading run folders (:class:`Run`, :func:`find_runs`)
- :mod:`~nasprune.report.normalisation`: the fixed hypervolume normalisation (``unit``, ``task``,
  ``paper``) and its reference point
- :mod:`~nasprune.report.hypervolume`: a run's final hypervolume and its value over time
- :mod:`~nasprune.report.ranks`: ranks per (task, data seed, seed) instance, bootstrap CIs
- :mod:`~nasprune.report.quality`: the unpruned score and the smallest size within a share of it
- :mod:`~nasprune.report.tables`: the hypervolume and compression tables, LaTeX
- :mod:`~nasprune.report.plots`: hypervolume over time, error against size, ranks
- :mod:`~nasprune.report.comparison`: the :func:`compare` job that writes them all
"""

from nasprune.report.comparison import Comparison, compare
from nasprune.report.hypervolume import mean_trace, run_hypervolume, run_trace
from nasprune.report.normalisation import NORMALISATIONS, Normalisation, make_normalisation
from nasprune.report.quality import SCORE_LEVELS, smallest_at_level, unpruned_error
from nasprune.report.ranks import INSTANCE_KEYS, average_ranks, instance_ranks
from nasprune.report.runs import GROUP_FIELDS, Run, find_runs, load_run
from nasprune.report.tables import compression_table, hypervolume_table, latex_table

__all__ = [
    "GROUP_FIELDS", "INSTANCE_KEYS", "NORMALISATIONS", "SCORE_LEVELS",
    "Comparison", "Normalisation", "Run",
    "average_ranks", "compare", "compression_table", "find_runs", "hypervolume_table", "instance_ranks",
    "latex_table", "load_run", "make_normalisation", "mean_trace", "run_hypervolume", "run_trace",
    "smallest_at_level", "unpruned_error",
]
