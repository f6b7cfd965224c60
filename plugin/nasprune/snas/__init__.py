"""Standard NAS (S-NAS) on Syne Tune: every candidate sub-network is one fine-tuning trial.

Klein et al. (2024), "Structural Pruning of Pre-trained Language Models via Neural
Architecture Search", §4: each candidate is cut out of the *pre-trained* model and fine-tuned
on its own. Here a Syne Tune ``Tuner`` runs the candidates as trials of the training script
:mod:`nasprune.snas.worker` on a ``LocalBackend`` (or as Ray tasks on a cluster:
:mod:`~nasprune.snas.ray_backend`). The worker reports validation error and size
after every epoch, so that a multi-fidelity scheduler can stop weak candidates early:

=============== ==================================================================================
method          scheduler
=============== ==================================================================================
moasha          :class:`SeededMOASHA`: MO-ASHA (Schmucker et al. 2021) over epochs; grace period
                1 epoch, reduction factor 3, ``max_t`` = the epochs
nsga2, ehvi,    :func:`nasprune.search.registry.make_scheduler`: single-fidelity, each trial
lsbo, rsbo,     is trained for all epochs and the searcher learns from its last epoch
morea,
local_search,
random_search
=============== ==================================================================================

Every method starts from the same initial design (largest, smallest and midpoint network).
The result has the files of the weight-sharing search (``results.csv``, ``summary.json``,
``pareto.png``, ``pareto.md``; one row per trial that reported an epoch, at its best validation
epoch, with the test error of that epoch), the hypervolume over wall-clock time
(``hypervolume_over_time.csv`` and ``.png``; one definition, :data:`nasprune.analysis.HYPERVOLUME_DEFINITION`),
``trials.csv`` (every started trial with its status and, for a failed one, the last line of its
error) and ``trials.jsonl``, the journal from which a killed search continues when its command
is run again (:class:`TrialJournal`). Trials exit on their own when the tuner dies.

The modules, one concept each:

- :mod:`~nasprune.snas.schedulers`: MO-ASHA with Pareto ranks, the trial limit, the scheduler of
  each method;
- :mod:`~nasprune.snas.journal`: the journal ``trials.jsonl`` and the trial statuses;
- :mod:`~nasprune.snas.resume`: recording a running tuner into the journal, continuing from it;
- :mod:`~nasprune.snas.tables`: ``results.csv``, ``trials.csv``, ``summary.json``, the hypervolume
  trace and plot;
- :mod:`~nasprune.snas.launch`: :func:`run_standard_nas` (settings, budgets, Syne Tune's folder);
- :mod:`~nasprune.snas.protocol`: what the launcher and its trials agree on;
- :mod:`~nasprune.snas.storage`: the trial folders, on a local or shared disk or at a URI;
- :mod:`~nasprune.snas.ray_backend`: trials as Ray tasks on a cluster (``backend="ray"``); not
  imported here, as it imports Ray;
- :mod:`~nasprune.snas.worker`: the trial (``python -m nasprune.snas.worker``); not imported here,
  as it loads torch.

>>> from nasprune.data import DataOptions
>>> result = run_standard_nas(None, DataOptions(task="rotten_tomatoes", max_seq_length=64),
...                           "out/snas", method="moasha", n_workers=2, max_wallclock_time=1800)
"""

from nasprune.snas.journal import JOURNAL_FILE, TRIAL_STATUSES, TrialJournal, TrialRecord, trial_status
from nasprune.snas.launch import (
    BACKENDS,
    WORKER_SCRIPT,
    default_max_failures,
    default_threads_per_worker,
    run_standard_nas,
)
from nasprune.snas.protocol import CHECKPOINT_POINTER, CHECKPOINT_PROGRESS, TUNER_PID_ENV
from nasprune.snas.resume import replay
from nasprune.search.multifidelity import ParetoRankPriority, SeededMOASHA, pareto_ranks
from nasprune.snas.schedulers import STANDARD_NAS_METHODS, TrialLimit, make_standard_nas_scheduler
from nasprune.snas.tables import (
    TRIALS_TABLE,
    StandardNASResult,
    best_epoch_table,
    hypervolume_trace,
    plot_hypervolume,
)

__all__ = [
    "BACKENDS",
    "CHECKPOINT_POINTER",
    "CHECKPOINT_PROGRESS",
    "JOURNAL_FILE",
    "STANDARD_NAS_METHODS",
    "TRIALS_TABLE",
    "TRIAL_STATUSES",
    "TUNER_PID_ENV",
    "WORKER_SCRIPT",
    "ParetoRankPriority",
    "SeededMOASHA",
    "StandardNASResult",
    "TrialJournal",
    "TrialLimit",
    "TrialRecord",
    "best_epoch_table",
    "default_max_failures",
    "default_threads_per_worker",
    "hypervolume_trace",
    "make_standard_nas_scheduler",
    "pareto_ranks",
    "plot_hypervolume",
    "replay",
    "run_standard_nas",
    "trial_status",
]
