"""Standard NAS (S-NAS) on Syne Tune: every candidate sub-network is one fine-tuning trial.

Klein et al. (2024), "Structural Pruning of Pre-trained Language Models via Neural
Architecture Search", §4: each candidate is cut out of the *pre-trained* model and fine-tuned
on its own. Here a Syne Tune ``Tuner`` runs the candidates as trials of the training script
:mod:`nasprune.worker` on a ``LocalBackend``. The worker reports validation error and size after
every epoch, so that a multi-fidelity scheduler can stop weak candidates early:

=============== ==================================================================================
method          scheduler
=============== ==================================================================================
moasha          :class:`SeededMOASHA`: MO-ASHA (Schmucker et al. 2021) over epochs; grace period
                1 epoch, reduction factor 3, ``max_t`` = the epochs
nsga2, ehvi,    :func:`nasprune.search.registry.make_scheduler`: single-fidelity, each trial
morea,          is trained for all epochs and the searcher learns from its last epoch
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

>>> from nasprune.data import DataOptions
>>> result = run_standard_nas(None, DataOptions(task="rotten_tomatoes", max_seq_length=64),
...                           "out/snas", method="moasha", n_workers=2, max_wallclock_time=1800)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import pandas as pd
from syne_tune.backend import LocalBackend
from syne_tune.backend.trial_status import Status, Trial
from syne_tune.constants import ST_TUNER_TIME, SYNE_TUNE_ENV_FOLDER
from syne_tune.optimizer.scheduler import SchedulerDecision, TrialScheduler, TrialSuggestion
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient
from syne_tune.tuner_callback import TunerCallback

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.files import save_figure_atomic, to_jsonable, write_csv_atomic, write_json_atomic
from nasprune.objectives import check_latency_settings, metric_columns
from nasprune.results import SearchResult, build_summary, result_row, write_results
from nasprune.search.encoding import Config, ConfigEncoder
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SEARCH_SPACES, SearchSpace

if TYPE_CHECKING:  # nasprune.data imports torch: only when a search really runs
    from nasprune.data import DataOptions

logger = logging.getLogger("nasprune")

STANDARD_NAS_METHODS = ("moasha", *METHODS)
#: The training script every trial runs.
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: MO-ASHA's rungs: the first after one epoch, then every factor of 3 (Schmucker et al. 2021).
GRACE_PERIOD = 1
REDUCTION_FACTOR = 3
#: A space with more variables is passed to the workers as a JSON file, not as arguments.
MAX_ARGUMENT_VARIABLES = 100
#: The environment variable that tells each trial the tuner's pid: a trial exits once its tuner
#: is gone (see :func:`nasprune.worker.watch_tuner`).
TUNER_PID_ENV = "NASPRUNE_TUNER_PID"
#: The experiment's journal (see :class:`TrialJournal`) and the table of every started trial.
JOURNAL_FILE = "trials.jsonl"
TRIALS_TABLE = "trials.csv"
#: A trial checkpoint (:class:`nasprune.worker.TrialCheckpoint`): ``latest.json`` names the
#: folder of the last saved epoch, whose ``trial.json`` holds the trial's reports so far.
CHECKPOINT_POINTER = "latest.json"
CHECKPOINT_PROGRESS = "trial.json"


# --- schedulers -----------------------------------------------------------------------------
class ParetoRankPriority(MOPriority):
    """One priority per result, lower is better: the rank in a non-dominated sort.

    Rows are sorted front by front (every row of the first Pareto front before every row of the
    second, and so on); inside a front the rows follow an epsilon-net, as in Syne Tune's
    non-dominated sort: first the row lowest in objective ``dim``, then always the row farthest
    from those already taken, so that the front's first rows spread over the whole trade-off.

    MO-ASHA's rungs read the priority of the *newest* row. Syne Tune 0.16's
    ``nondominated_sort`` returns neither ranks nor an order: for each front it lists the
    front's rows indexed by their within-front ranks (``front[ranks]``), so using its output as
    priorities (``NonDominatedPriority``) mixes the fronts, and inverting it as an order
    permutes the ranks inside each front (the front's best row can come last). So the ranks are
    computed here from Syne Tune's ``pareto_efficient`` and our own epsilon-net.
    """

    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = dim

    def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
        return pareto_ranks(objectives, self.dim)


def pareto_ranks(objectives: np.ndarray, dim: int = 0) -> np.ndarray:
    """The rank (0 = best) of every row of ``objectives`` (``[n, m]``, all minimised) in a
    non-dominated sort with an epsilon-net inside each front (see :class:`ParetoRankPriority`)."""
    objectives = np.asarray(objectives, dtype=float)
    ranks = np.empty(len(objectives), dtype=np.int64)
    remaining = np.arange(len(objectives))
    next_rank = 0
    while remaining.size:
        on_front = pareto_efficient(objectives[remaining])
        front = remaining[on_front]
        for position, row in enumerate(_spread_order(objectives[front], dim)):
            ranks[front[row]] = next_rank + position
        next_rank += len(front)
        remaining = remaining[~on_front]
    return ranks


def _spread_order(points: np.ndarray, dim: int) -> list[int]:
    """Farthest-first order of ``points``, starting from the lowest in objective ``dim``
    (the earliest row among ties): an epsilon-net (Clarkson 2005)."""
    first = int(np.argmin(points[:, dim]))
    order = [first]
    distance = np.linalg.norm(points - points[first], axis=1)  # to the nearest row taken
    distance[first] = -np.inf
    while len(order) < len(points):
        farthest = int(np.argmax(distance))
        order.append(farthest)
        distance = np.minimum(distance, np.linalg.norm(points - points[farthest], axis=1))
        distance[order] = -np.inf
    return order


class SeededMOASHA(MOASHA):
    """MO-ASHA over epochs that starts from an initial design and honours its seed.

    Schmucker, Donini, Perrone, Archambeau, "Multi-objective multi-fidelity hyperparameter
    optimization with application to fairness" (2021). Differences to Syne Tune's ``MOASHA``:

    - ``points_to_evaluate`` come first (``MOASHA`` takes none), so that every method starts
      from the same initial design;
    - random configs are drawn from a generator seeded with ``random_seed`` (``MOASHA``
      samples numpy's global generator), and a config whose ``config_key`` was suggested
      before is redrawn (up to ``max_retries`` times): in the ``small`` space every config with
      ``num_layers=0`` is the same sub-network, and fine-tuning it again is wasted time;
    - rungs rank results with :class:`ParetoRankPriority`.

    :param config_space: Syne Tune config space (constants are passed to every trial).
    :param metrics: Reported metrics, all minimised.
    :param max_t: Epochs of a trial that is never stopped.
    :param points_to_evaluate: Configs to start first, in order.
    :param time_attr: The reported resource, 1-based (``epoch``).
    :param config_key: What makes two configs the same candidate (e.g.
        ``SearchSpace.to_subnet``); default: the config itself.
    :param max_retries: How often to redraw a config that was suggested before.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        metrics: list[str],
        max_t: int,
        points_to_evaluate: list[Config] | None = None,
        grace_period: int = GRACE_PERIOD,
        reduction_factor: float = REDUCTION_FACTOR,
        time_attr: str = "epoch",
        random_seed: int | None = None,
        config_key: Callable[[Config], Hashable] | None = None,
        max_retries: int = 20,
    ):
        super().__init__(
            config_space,
            metrics=list(metrics),
            do_minimize=True,
            time_attr=time_attr,
            multiobjective_priority=ParetoRankPriority(),
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            random_seed=random_seed,
        )
        self.points_to_evaluate = [dict(p) for p in points_to_evaluate or []]
        self._encoder = ConfigEncoder(config_space)
        self._rng = np.random.default_rng(self.random_seed)
        self._config_key = config_key or (lambda config: self._encoder.key(self._encoder.encode(config)))
        self.max_retries = max_retries
        self._suggested: set[Hashable] = set()

    def suggest(self) -> TrialSuggestion | None:
        if self.points_to_evaluate:
            config = {**self._encoder.constants, **self.points_to_evaluate.pop(0)}
        else:
            config = self._sample()
            for _ in range(self.max_retries):
                if self._config_key(config) not in self._suggested:
                    break
                config = self._sample()
        self._suggested.add(self._config_key(config))
        return TrialSuggestion.start_suggestion(config)

    def on_trial_add(self, trial: Trial) -> None:
        # Trials of an earlier run of a resumed experiment are added without being suggested.
        self._suggested.add(self._config_key(trial.config))
        super().on_trial_add(trial)

    def _sample(self) -> Config:
        return self._encoder.decode(self._encoder.sample(self._rng))


class TrialLimit(TrialScheduler):
    """Runs ``scheduler`` for at most ``max_trials`` trials, and lets the last ones finish.

    Syne Tune's ``StoppingCriterion(max_num_trials_started=N)`` fires once *more* than N trials
    were started, after which the tuner kills the running ones. A scheduler that runs dry
    instead (``suggest`` returns None) makes the tuner wait for the running trials and finish:
    exactly N trials, each trained as far as its scheduler lets it.

    :param max_trials: The trials to start; None: no limit.
    :param restart: ``(config, trial id)`` of trials an interrupted run of the experiment left
        unfinished: they are started first (counted against ``max_trials``), each from the
        checkpoint of its earlier trial.
    """

    def __init__(
        self, scheduler: TrialScheduler, max_trials: int | None,
        restart: Sequence[tuple[Config, int]] = (),
    ):
        super().__init__(random_seed=scheduler.random_seed)
        self.scheduler = scheduler
        self.max_trials = max_trials
        self.num_started = 0
        self.restart = list(restart)

    def suggest(self) -> TrialSuggestion | None:
        if self.max_trials is not None and self.num_started >= self.max_trials:
            return None
        if self.restart:
            config, earlier_trial_id = self.restart.pop(0)
            self.num_started += 1
            return TrialSuggestion.start_suggestion(dict(config), checkpoint_trial_id=earlier_trial_id)
        suggestion = self.scheduler.suggest()
        if suggestion is not None and suggestion.spawn_new_trial_id:
            self.num_started += 1
        return suggestion

    def on_trial_add(self, trial: Trial) -> None:
        self.scheduler.on_trial_add(trial)

    def on_trial_error(self, trial: Trial) -> None:
        self.scheduler.on_trial_error(trial)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        return self.scheduler.on_trial_result(trial, result)

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        self.scheduler.on_trial_complete(trial, result)

    def on_trial_remove(self, trial: Trial) -> None:
        self.scheduler.on_trial_remove(trial)

    def metric_names(self) -> list[str]:
        return self.scheduler.metric_names()

    def metric_mode(self) -> str:
        return self.scheduler.metric_mode()

    def metadata(self) -> dict[str, Any]:
        return {**self.scheduler.metadata(), "max_trials": self.max_trials}


def make_standard_nas_scheduler(
    method: str,
    config_space: dict[str, Any],
    metrics: list[str],
    epochs: int,
    points_to_evaluate: list[Config] | None = None,
    random_seed: int | None = None,
    space: SearchSpace | None = None,
) -> TrialScheduler:
    """The scheduler of an S-NAS ``method`` (see :data:`STANDARD_NAS_METHODS`).

    ``moasha`` is :class:`SeededMOASHA` with ``max_t=epochs`` (given the search ``space``, it
    never suggests a random config whose sub-network it suggested before); the other methods
    are the single-fidelity schedulers of :func:`nasprune.search.registry.make_scheduler`.
    """
    if method == "moasha":
        return SeededMOASHA(
            config_space, metrics, epochs, points_to_evaluate, random_seed=random_seed,
            config_key=space.to_subnet if space is not None else None,
        )
    return make_scheduler(method, config_space, metrics, points_to_evaluate, random_seed)


# --- results --------------------------------------------------------------------------------
#: What the worker reports per epoch, besides the objectives.
REPORTED = ["valid_error", "test_error", "params", "relative_params", "macs", "relative_macs"]
#: Reported too when latency is an objective.
LATENCY_REPORTED = ["latency_seconds", "relative_latency"]


#: The final status of a trial (see :func:`trial_status`).
TRIAL_STATUSES = ("completed", "stopped_early", "interrupted", "failed")


def trial_status(epochs_run: int, epochs: int, syne_tune_status: str, scheduler_stopped: bool) -> str:
    """``completed`` (all epochs), ``stopped_early`` (by MO-ASHA), ``interrupted`` (the budget
    ran out, the trial was stopped from outside or its tuner died) or ``failed``."""
    if epochs_run >= epochs:
        return "completed"
    if scheduler_stopped:
        return "stopped_early"
    if syne_tune_status == Status.failed:
        return "failed"
    return "interrupted"


def best_epoch_table(results: pd.DataFrame, space: SearchSpace, statuses: dict[int, str]) -> pd.DataFrame:
    """One row per trial that reported at least one epoch, at its best validation epoch.

    :param results: Every report (:meth:`TrialJournal.results`): one row per epoch, with
        ``trial_id``, ``config_<name>`` columns and ``st_tuner_time``.
    :param space: The search space the configs belong to.
    :param statuses: The final status of each trial (:data:`TRIAL_STATUSES`).
    :return: Columns ``trial_id``, ``config_<variable>`` (spaces of at most 64 variables), the
        reported metrics of the best epoch (lowest ``valid_error``, the earliest among ties;
        the size does not change between epochs), ``best_epoch``, ``epochs`` (run),
        ``status``, ``trial_seconds`` (the trial's working time up to the best epoch),
        ``elapsed_seconds`` (the tuner's wall-clock time when the best epoch was reported),
        the sub-network's layout and ``subnet`` (JSON).
    """
    ordered = results.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    best = ordered.loc[ordered.groupby("trial_id")["valid_error"].idxmin()].reset_index(drop=True)
    epochs_run = ordered.groupby("trial_id")["epoch"].max()
    rows = []
    for record in best.to_dict("records"):
        trial_id = int(record["trial_id"])
        config = {name: int(record[f"config_{name}"]) for name in space.variable_names}
        measured = {name: record[name] for name in REPORTED + LATENCY_REPORTED if name in record}
        measured["best_epoch"] = int(record["epoch"])
        measured["epochs"] = int(epochs_run[trial_id])
        measured["status"] = statuses.get(trial_id, "interrupted")
        measured["trial_seconds"] = record["elapsed_seconds"]
        measured["elapsed_seconds"] = record[ST_TUNER_TIME]
        rows.append(result_row(trial_id, space.to_subnet(config), measured, config=config))
    return pd.DataFrame(rows)


def hypervolume_trace(
    results: pd.DataFrame, metrics: Sequence[str], reference_point: Sequence[float]
) -> pd.DataFrame:
    """Hypervolume of every epoch reported so far, after each report, over the tuner's time.

    Every reported epoch is a fine-tuned sub-network one could keep, so the curve counts them
    all; its last value is the hypervolume of the best-epoch table.
    """
    ordered = results.sort_values(ST_TUNER_TIME, kind="stable").reset_index(drop=True)
    trace = analysis.hypervolume_over_time(ordered, metrics, ST_TUNER_TIME, reference_point)
    return pd.DataFrame(
        {
            "wallclock_seconds": trace[ST_TUNER_TIME],
            "trial_id": ordered["trial_id"].astype(int),
            "epoch": ordered["epoch"].astype(int),
            "hypervolume": trace["hypervolume"],
        }
    )


def plot_hypervolume(trace: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """A PNG of the hypervolume over wall-clock time (a step line), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    minutes = trace["wallclock_seconds"].to_numpy(dtype=float) / 60
    axes.step(minutes, trace["hypervolume"], where="post", color="C0")
    axes.scatter(minutes, trace["hypervolume"], s=8, color="C0")
    axes.set_xlabel("wall-clock time (minutes)")
    axes.set_ylabel("hypervolume")
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure_atomic(figure, path)


# --- the run --------------------------------------------------------------------------------
@dataclass
class StandardNASResult(SearchResult):
    """A search result, in the weight-sharing search's format, plus Syne Tune's side."""

    hypervolume_over_time: pd.DataFrame | None = None
    #: Syne Tune's results: one row per reported epoch.
    syne_tune_results: pd.DataFrame | None = None
    tuner: Any = None


def _check_budget(
    method: str, n_workers: int, epochs: int, max_wallclock_time: float | None, max_trials: int | None
) -> None:
    if method not in STANDARD_NAS_METHODS:
        raise NaspruneError(
            f"unknown search method '{method}'; choose one of: {', '.join(STANDARD_NAS_METHODS)}"
        )
    if n_workers < 1:
        raise NaspruneError(f"--n-workers must be at least 1, got {n_workers}")
    if epochs < 1:
        raise NaspruneError(f"--epochs must be at least 1, got {epochs}")
    if max_wallclock_time is None and max_trials is None:
        raise NaspruneError("give a budget: --max-wallclock-time SECONDS or --max-trials N")
    if max_wallclock_time is not None and not max_wallclock_time > 0:
        raise NaspruneError(f"--max-wallclock-time must be positive, got {max_wallclock_time}")
    if max_trials is not None and max_trials < 1:
        raise NaspruneError(f"--max-trials must be at least 1, got {max_trials}")


def _model_shape(model: str, sequence_lengths: Sequence[int] = ()):
    """The shape of ``model`` from its config alone (the weights are the workers' business);
    refuses sequence lengths beyond the model's positions."""
    from transformers import AutoConfig

    from nasprune.subnet import ModelShape
    from nasprune.supernet import check_max_seq_length, get_adapter

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load model {model!r}: {err}") from err
    get_adapter(getattr(config, "model_type", ""))  # refuses unsupported families
    for length in sequence_lengths:
        check_max_seq_length(config, length)
    return ModelShape.from_config(config)


def _absolute(path: str | None) -> str | None:
    """Workers may run elsewhere: pass existing local paths as absolute paths."""
    if path is not None and Path(path).exists():
        return str(Path(path).resolve())
    return path


def _data_hyperparameters(data_options: DataOptions) -> tuple[dict[str, Any], str]:
    """The data options every trial gets, and the task's name.

    The data is loaded here once, so that a bad task, file or column fails the run at once
    with its own message instead of failing every trial.
    """
    from dataclasses import asdict

    task_data = data_options.load()
    values = asdict(data_options)
    for name in ("train_file", "validation_file", "test_file"):
        values[name] = _absolute(values[name])
    values["data_seed"] = values.pop("seed")  # the split's seed; --seed seeds the training
    return {k: v for k, v in values.items() if v is not None}, task_data.spec.name


def default_threads_per_worker(n_workers: int) -> int:
    """The cores this process may use, shared evenly by ``n_workers`` trials (at least 1 each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // n_workers)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables inside the block (trials inherit them), restore them after."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- the journal: what makes a killed search resumable ----------------------------------------
JOURNAL_FORMAT = "nasprune standard-NAS journal v1"
#: How often (seconds) the journal notes the time spent while no trial reports.
HEARTBEAT_SECONDS = 10.0


@dataclass
class TrialRecord:
    """One trial as the journal knows it."""

    trial_id: int
    config: Config
    #: Every report, in order, with ``st_tuner_time`` on the experiment's clock.
    results: list[dict[str, Any]] = field(default_factory=list)
    #: One of :data:`TRIAL_STATUSES`; None while it runs (or when its tuner died).
    status: str | None = None
    #: The last line of the trial's error output, for a failed trial.
    error: str | None = None
    #: The trial this one continues (from its checkpoint) after the experiment was interrupted.
    continues: int | None = None
    #: Syne Tune's folder of the trial (``std.err``, ``std.out``, checkpoints).
    path: str | None = None


class TrialJournal:
    """The record of a standard-NAS experiment: ``trials.jsonl`` in its output folder.

    One JSON object per line, appended and flushed to disk as things happen: the settings
    (first line), each run of the command, each trial's start (config), every result it
    reports, its end (status and error), and now and then the time spent. A line cut off by a
    crash is ignored. Rerunning the command on the same folder continues the experiment from it:
    finished trials are replayed into the new scheduler (so that it learns from them and does
    not suggest them again) and count against the budget (trials and wall-clock time), and
    trials that were running when the tuner died are started again first, from their last
    checkpoint.

    Why not Syne Tune's own checkpoint (``save_tuner=True`` and ``Tuner.load``): it is
    ``tuner.dill``, a pickle of the whole tuner, and unpickling a file runs whatever code the
    file says; nasprune never unpickles anything it reads from disk, as output folders are
    shared and copied around. It is also written only every few results, so a kill loses the
    results since, and it pins the scheduler's Python classes, so a fixed scheduler (such as
    :class:`ParetoRankPriority`) could not continue an experiment. The journal is plain data.
    """

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        self.settings = settings
        self.trials: dict[int, TrialRecord] = {}
        #: Seconds the experiment ran in earlier runs of the command (up to their last line).
        self.elapsed_before = 0.0
        self.num_runs = 0
        self._run_started = time.perf_counter()
        self._last_line = 0.0

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls, output_dir: Path, settings: dict[str, Any], *, resume: bool = False, overwrite: bool = False
    ) -> "TrialJournal":
        """The experiment in ``output_dir`` (continued), or a new one.

        :param resume: Refuse to start afresh: there must be an experiment to continue.
        :param overwrite: Start afresh, dropping the journal and Syne Tune's folder.
        :raises NaspruneError: The folder holds an experiment with other settings (each
            difference is named), or ``resume`` and there is none, or the journal is corrupt.
        """
        settings = json.loads(json.dumps(to_jsonable(settings)))  # as it reads back
        path = output_dir / JOURNAL_FILE
        if overwrite and resume:
            raise NaspruneError("--resume and --overwrite-output-dir contradict each other; pass one")
        if overwrite or not path.exists():
            if resume:
                raise NaspruneError(
                    f"--resume: {output_dir} holds no standard-NAS experiment ({JOURNAL_FILE}) to continue"
                )
            trial_folders = output_dir / "syne-tune"
            if trial_folders.exists() and not overwrite:
                # Without a journal they cannot be continued, and new trial ids would clash with them.
                raise NaspruneError(
                    f"{trial_folders} holds trials of an experiment nasprune cannot continue (no {JOURNAL_FILE}); "
                    "pass --overwrite-output-dir to replace them, or choose another --output-dir"
                )
            path.unlink(missing_ok=True)
            shutil.rmtree(trial_folders, ignore_errors=True)
            journal = cls(path, settings)
            output_dir.mkdir(parents=True, exist_ok=True)
            journal._append({"event": "settings", "format": JOURNAL_FORMAT, "settings": settings})
            return journal
        journal = cls.read(path)
        differences = [
            f"{_flag(name)} {_show(journal.settings.get(name))} (now {_show(settings.get(name))})"
            for name in sorted(set(settings) | set(journal.settings))
            if settings.get(name) != journal.settings.get(name)
        ]
        if differences:
            raise NaspruneError(
                f"{output_dir} holds a standard-NAS experiment with other settings: {'; '.join(differences)}; "
                "rerun with its settings to continue it, or pass --overwrite-output-dir to start afresh"
            )
        return journal

    @classmethod
    def read(cls, path: Path) -> "TrialJournal":
        """Read a journal (see :meth:`open`)."""
        lines = path.read_text().splitlines()
        events = []
        for number, line in enumerate(lines, 1):
            try:
                events.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break  # the last line, cut off when the process was killed
                raise NaspruneError(
                    f"{path} is corrupt at line {number}; pass --overwrite-output-dir to start afresh"
                ) from None
        if not events or events[0].get("format") != JOURNAL_FORMAT:
            raise NaspruneError(
                f"{path} is not a nasprune standard-NAS journal; pass --overwrite-output-dir to start afresh"
            )
        journal = cls(path, events[0]["settings"])
        try:
            for event in events[1:]:
                journal._apply(event)
        except (KeyError, TypeError, ValueError) as err:
            raise NaspruneError(f"{path} is corrupt ({err!r}); pass --overwrite-output-dir to start afresh") from None
        journal.elapsed_before = max((e.get("elapsed", 0.0) for e in events), default=0.0)
        return journal

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run":
            self.num_runs += 1
        elif kind == "start":
            self.trials[int(event["trial_id"])] = TrialRecord(
                int(event["trial_id"]), event["config"], continues=event.get("continues"), path=event.get("path")
            )
        elif kind == "result":
            self.trials[int(event["trial_id"])].results.append(event["result"])
        elif kind == "end":
            record = self.trials[int(event["trial_id"])]
            record.status, record.error = event["status"], event.get("error")

    # --- writing ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds the experiment has run, over all runs of the command."""
        return self.elapsed_before + time.perf_counter() - self._run_started

    def _append(self, event: dict[str, Any]) -> None:
        event = {**event, "elapsed": self.elapsed()}
        line = json.dumps(to_jsonable(event), allow_nan=False) + "\n"
        # One write of one line, flushed to disk: a crash can only cut off this last line.
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._last_line = time.perf_counter()
        self._apply(event)

    def start_run(self, budget: dict[str, Any]) -> None:
        self._run_started = time.perf_counter()
        self._append({"event": "run", "pid": os.getpid(), "budget": budget})

    def record_start(self, trial_id: int, config: Config, continues: int | None, path: str) -> None:
        self._append({"event": "start", "trial_id": trial_id, "config": config, "continues": continues, "path": path})

    def record_result(self, trial_id: int, result: dict[str, Any]) -> None:
        result = {k: v for k, v in result.items() if not k.startswith("config_")}
        result[ST_TUNER_TIME] = self.elapsed()
        self._append({"event": "result", "trial_id": trial_id, "result": result})

    def record_end(self, trial_id: int, status: str, error: str | None = None) -> None:
        self._append({"event": "end", "trial_id": trial_id, "status": status, "error": error})

    def heartbeat(self) -> None:
        if time.perf_counter() - self._last_line >= HEARTBEAT_SECONDS:
            self._append({"event": "alive"})

    # --- reading ---------------------------------------------------------------------------
    @property
    def next_trial_id(self) -> int:
        return max(self.trials, default=-1) + 1

    def experiment_trials(self) -> dict[int, list[TrialRecord]]:
        """Each trial of the experiment, by the id it started with: its record, then the records
        of its continuations after interruptions."""
        chains: dict[int, list[TrialRecord]] = {}
        first_of: dict[int, int] = {}
        for trial_id in sorted(self.trials):
            record = self.trials[trial_id]
            first = first_of.get(record.continues, trial_id) if record.continues is not None else trial_id
            first_of[trial_id] = first
            chains.setdefault(first, []).append(record)
        return chains

    @staticmethod
    def chain_results(chain: list[TrialRecord]) -> list[dict[str, Any]]:
        """The reports of a trial and its continuations, one per epoch (a continuation that had
        nothing left to train repeats its last epoch's report)."""
        by_epoch: dict[int, dict[str, Any]] = {}
        for record in chain:
            for result in record.results:
                by_epoch.setdefault(int(result["epoch"]), result)
        return [by_epoch[epoch] for epoch in sorted(by_epoch)]

    def final_status(self, chain: list[TrialRecord]) -> str:
        return chain[-1].status or "interrupted"  # no end recorded: its tuner died

    def results(self, space: SearchSpace) -> pd.DataFrame:
        """Every report of every trial: one row per epoch, with ``trial_id`` (the id the trial
        started with), ``config_<name>`` and ``st_tuner_time`` on the experiment's clock."""
        rows = []
        for first, chain in self.experiment_trials().items():
            config = {f"config_{name}": chain[0].config[name] for name in space.variable_names}
            rows.extend({**result, "trial_id": first, **config} for result in self.chain_results(chain))
        return pd.DataFrame(rows)


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def _show(value: Any) -> str:
    return "(not set)" if value is None else json.dumps(value)


class JournalCallback(TunerCallback):
    """Writes each trial's start, every result and its end into the :class:`TrialJournal` as
    they happen, so that a killed tuner leaves a complete record of what it did."""

    def __init__(self, journal: TrialJournal, backend: "ContinuingLocalBackend", epochs: int):
        self.journal = journal
        self.backend = backend
        self.epochs = epochs
        self.tuner: Any = None

    def on_tuning_start(self, tuner: Any) -> None:
        self.tuner = tuner

    def on_start_trial(self, trial: Trial) -> None:
        self.journal.record_start(
            trial.trial_id, trial.config, self.backend.continues.get(trial.trial_id),
            str(self.backend.trial_path(trial.trial_id)),
        )

    def on_trial_result(self, trial: Trial, status: str, result: dict[str, Any], decision: str) -> None:
        self.journal.record_result(trial.trial_id, result)

    def on_loop_end(self) -> None:
        _record_ends(self.journal, self.tuner, self.epochs, running_too=False)
        self.journal.heartbeat()


def checkpointed_reports(checkpoint_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The reports a trial saved with its last checkpoint; [] when it has none (or a damaged
    one, which the worker itself refuses when it resumes)."""
    folder = Path(checkpoint_dir)
    try:
        name = json.loads((folder / CHECKPOINT_POINTER).read_text())["folder"]
        reports = json.loads((folder / Path(str(name)).name / CHECKPOINT_PROGRESS).read_text())["reports"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [r for r in reports if isinstance(r, dict) and "epoch" in r] if isinstance(reports, list) else []


def recover_unread_reports(journal: TrialJournal) -> None:
    """Journal the epochs that trials left unfinished had checkpointed but their tuner had not
    read yet when it died (a trial saves its checkpoint, then reports): the trial continues
    after them and will not report them again."""
    for chain in journal.experiment_trials().values():
        last = chain[-1]
        if last.status is not None or last.path is None:
            continue
        known = {int(result["epoch"]) for result in journal.chain_results(chain)}
        for report in checkpointed_reports(Path(last.path) / "checkpoints"):
            if int(report["epoch"]) not in known:
                journal.record_result(last.trial_id, report)


def replay(journal: TrialJournal, scheduler: TrialScheduler) -> list[tuple[Config, int]]:
    """Tell a new ``scheduler`` about the trials of earlier runs, as the tuner told the old one.

    :return: ``(config, trial id)`` of the trials left unfinished (no end recorded: the tuner
        died), to start again from their checkpoints.
    """
    unfinished = []
    for chain in journal.experiment_trials().values():
        last = chain[-1]
        if last.status is None:
            unfinished.append((last.config, last.trial_id))
            continue
        trial = Trial(trial_id=chain[0].trial_id, config=chain[0].config, creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        decision = SchedulerDecision.CONTINUE
        results = journal.chain_results(chain)
        for result in results:
            decision = scheduler.on_trial_result(trial, result)
        if decision == SchedulerDecision.STOP:
            scheduler.on_trial_remove(trial)
        elif last.status == "completed":
            scheduler.on_trial_complete(trial, results[-1])
        else:  # failed, or interrupted by the budget: no verdict on the config
            scheduler.on_trial_error(trial)
    return unfinished


class ContinuingLocalBackend(LocalBackend):
    """A ``LocalBackend`` for a resumable experiment: trial ids continue after those of earlier
    runs (all trials of the experiment share one Syne Tune folder), and a trial that continues
    an interrupted one starts from that trial's checkpoint when there is one."""

    def __init__(self, *args: Any, first_trial_id: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.first_trial_id = first_trial_id
        #: new trial id -> the id of the interrupted trial it continues
        self.continues: dict[int, int] = {}

    def new_trial_id(self) -> int:
        return self.first_trial_id + len(self.trial_ids)

    def start_trial(self, config: dict[str, Any], checkpoint_trial_id: int | None = None) -> Any:
        if checkpoint_trial_id is not None:
            self.continues[self.new_trial_id()] = checkpoint_trial_id
        return super().start_trial(config, checkpoint_trial_id)

    def copy_checkpoint(self, src_trial_id: int, tgt_trial_id: int) -> None:
        if self.checkpoint_trial_path(src_trial_id).is_dir():  # none when it died before its first epoch
            super().copy_checkpoint(src_trial_id, tgt_trial_id)


def default_max_failures(max_trials: int | None) -> int:
    """Failed trials a search survives: the larger of 3 and a tenth of the trial budget."""
    return max(3, math.ceil(max_trials / 10)) if max_trials is not None else 3


def last_error_line(trial_path: str | os.PathLike | None) -> str | None:
    """The last non-empty line of a trial's ``std.err`` (its error message), if any."""
    if trial_path is None:
        return None
    try:
        lines = (Path(trial_path) / "std.err").read_text(errors="replace").splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else None


def run_standard_nas(
    model: str | None,
    data_options: DataOptions,
    output_dir: str | os.PathLike,
    *,
    search_space: str = "small",
    method: str = "moasha",
    n_workers: int = 2,
    max_wallclock_time: float | None = None,
    max_trials: int | None = None,
    epochs: int = 3,
    seed: int = 0,
    objectives: Sequence[str] = ("error", "params"),
    learning_rate: float = 2e-5,
    batch_size: int = 32,
    warmup_ratio: float = 0.1,
    macs_seq_length: int | None = None,
    latency_batch_size: int = 1,
    latency_seq_length: int | None = None,
    eval_batch_size: int = 128,
    num_threads: int | None = None,
    max_failures: int | None = None,
    sleep_time: float = 2.0,
    keep_checkpoints: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    worker_script: str | os.PathLike | None = None,
) -> StandardNASResult:
    """Standard NAS: fine-tune candidate sub-networks of ``model`` as Syne Tune trials.

    An experiment whose command was killed continues when the command is run again on the same
    ``output_dir`` (see :class:`TrialJournal`): finished trials are not trained again and count
    against the budget; trials that were running restart from their last epoch.

    :param model: HF model name or path; None: the offline MiniLM-L6.
    :param data_options: Task or files, sequence length, sample caps and the split seed
        (``data_options.seed``, ``--data-seed``).
    :param output_dir: Where the results go; Syne Tune's experiment folder (trial logs and
        checkpoints) is ``output_dir/syne-tune/nasprune-<method>``.
    :param search_space: One of :data:`nasprune.spaces.SEARCH_SPACES`.
    :param method: One of :data:`STANDARD_NAS_METHODS`.
    :param n_workers: Trials run at the same time. With GPUs each trial gets its own while
        there are enough; on CPU the cores are split between the workers.
    :param max_wallclock_time: Stop after this many seconds (over all runs of the experiment);
        running trials are stopped and keep the epochs they reported.
    :param max_trials: Start at most this many trials, and let them finish.
    :param epochs: Fine-tuning epochs of a trial (MO-ASHA's ``max_t``).
    :param seed: Seeds the training (head initialisation, dropout, batch order) and the search.
    :param objectives: ``error`` followed by one or more of ``params``, ``macs`` and ``latency``.
    :param latency_batch_size: With ``latency``: the batch size each trial times its model at.
    :param latency_seq_length: With ``latency``: the sequence length (default: ``max_seq_length``).
    :param num_threads: Torch threads per trial; default: the cores split across the workers.
    :param max_failures: Stop the search after more failed trials than this; default
        :func:`default_max_failures`.
    :param sleep_time: How often (seconds) the tuner polls the trials.
    :param keep_checkpoints: Keep every trial's last checkpoint (weights and optimizer state).
    :param resume: Continue the experiment in ``output_dir``; refuse when there is none.
    :param overwrite: Start afresh even when ``output_dir`` holds an experiment.
    :param worker_script: The script each trial runs (default :data:`WORKER_SCRIPT`).
    :raises NaspruneError: For a bad setting (before any trial starts), an impossible budget,
        an unknown method, space, task or model, an experiment in ``output_dir`` with other
        settings, or when too many trials failed (the message points to their logs).
    """
    import torch
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.results_callback import StoreResultsCallback

    from nasprune.spaces import get_search_space
    from nasprune.training import TrainingConfig
    from nasprune.workflows import default_model

    # Every setting is checked here, before a model is loaded or a trial starts.
    _check_budget(method, n_workers, epochs, max_wallclock_time, max_trials)
    TrainingConfig(
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed, warmup_ratio=warmup_ratio
    ).validate()
    data_options.validate()
    metrics = metric_columns(objectives)
    if search_space not in SEARCH_SPACES:
        raise NaspruneError(f"unknown search space '{search_space}'; choose one of: {', '.join(SEARCH_SPACES)}")
    for flag, value in (("--num-threads", num_threads), ("--eval-batch-size", eval_batch_size),
                        ("--macs-seq-length", macs_seq_length)):
        if value is not None and value < 1:
            raise NaspruneError(f"{flag} must be at least 1, got {value}")
    if max_failures is not None and max_failures < 0:
        raise NaspruneError(f"--max-failures must be at least 0, got {max_failures}")
    if "relative_latency" in metrics:
        check_latency_settings(latency_batch_size, latency_seq_length)
    max_failures = default_max_failures(max_trials) if max_failures is None else max_failures
    model = _absolute(model) or default_model()
    lengths = [data_options.max_seq_length]
    if "relative_latency" in metrics and latency_seq_length:
        lengths.append(latency_seq_length)
    space = get_search_space(search_space, _model_shape(model, lengths))
    data_values, task = _data_hyperparameters(data_options)
    num_gpus = torch.cuda.device_count()
    fixed = {
        "model": model,
        **data_values,
        "search_space": space.name,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "warmup_ratio": warmup_ratio,
        "seed": seed,
        "eval_batch_size": eval_batch_size,
        "num_threads": num_threads or default_threads_per_worker(n_workers),
    }
    if macs_seq_length is not None:
        fixed["macs_seq_length"] = macs_seq_length
    if "relative_latency" in metrics:
        # Every trial times its own sliced sub-network and the full model in the same process, so
        # the ratio holds even when workers share the cores and the absolute times are inflated.
        fixed["measure_latency"] = 1
        fixed["latency_batch_size"] = latency_batch_size
        fixed["latency_seq_length"] = latency_seq_length or data_options.max_seq_length
    output_dir = Path(output_dir)
    # What must not change when the experiment continues (threads only share out the machine).
    settings = {"method": method, "objectives": metrics, **{k: v for k, v in fixed.items() if k != "num_threads"}}
    journal = TrialJournal.open(output_dir, settings, resume=resume, overwrite=overwrite)
    config_space = {**space.config_space, **fixed}
    initial_design = [{**point, **fixed} for point in space.initial_design()]
    earlier = journal.experiment_trials()
    started_before = {space.to_subnet(chain[0].config) for chain in earlier.values()}
    initial_design = [point for point in initial_design if space.to_subnet(point) not in started_before]
    scheduler = make_standard_nas_scheduler(method, config_space, metrics, epochs, initial_design, seed, space)
    recover_unread_reports(journal)
    restart = replay(journal, scheduler)
    # A trial left unfinished continues with this run's resources (threads).
    restart = [({**config, "num_threads": fixed["num_threads"]}, trial_id) for config, trial_id in restart]
    finished_before = len(earlier) - len(restart)
    failed_before = sum(journal.final_status(chain) == "failed" for chain in earlier.values())
    trials_left = None if max_trials is None else max_trials - finished_before
    seconds_left = None if max_wallclock_time is None else max_wallclock_time - journal.elapsed_before
    if earlier:
        logger.info(
            "continuing the experiment in %s: %d trials finished, %d to restart, %.0fs spent",
            output_dir, finished_before, len(restart), journal.elapsed_before,
        )

    started = time.perf_counter()
    tuner = None
    syne_tune_path = output_dir / "syne-tune"
    tuner_name = f"nasprune-{method.replace('_', '-')}"
    if (trials_left is None or trials_left > 0) and (seconds_left is None or seconds_left > 0):
        scheduler = TrialLimit(scheduler, trials_left, restart)
        # LocalBackend builds a command line by splitting on spaces: values with blanks, and the
        # 37k variables of the large space, travel in a JSON file instead.
        as_json = space.num_variables > MAX_ARGUMENT_VARIABLES or any(
            isinstance(v, str) and any(c.isspace() for c in v) for v in fixed.values()
        )
        backend = ContinuingLocalBackend(
            entry_point=str(worker_script or WORKER_SCRIPT),
            delete_checkpoints=not keep_checkpoints,
            pass_args_as_json=as_json,
            # One GPU per trial while there are enough. (Asking Syne Tune to find out itself runs
            # nvidia-smi and leaves its output as std.out in the working directory.)
            rotate_gpus=num_gpus > 1,
            first_trial_id=journal.next_trial_id,
        )
        logger.info(
            "standard NAS with %s over the '%s' space: %d workers (%s), %d epochs per trial, budget %s",
            method, space.name, n_workers,
            f"{num_gpus} GPUs" if num_gpus else f"{fixed['num_threads']} CPU threads each",
            epochs, _describe_budget(seconds_left, trials_left),
        )
        journal.start_run({"max_wallclock_time": max_wallclock_time, "max_trials": max_trials, "n_workers": n_workers})
        with _environment({SYNE_TUNE_ENV_FOLDER: str(syne_tune_path), TUNER_PID_ENV: str(os.getpid())}):
            tuner = Tuner(
                trial_backend=backend,
                scheduler=scheduler,
                # The trial limit is exact through TrialLimit; the criterion also records it.
                stop_criterion=StoppingCriterion(max_wallclock_time=seconds_left, max_num_trials_started=trials_left),
                n_workers=n_workers,
                sleep_time=sleep_time,
                # One folder for every run of the experiment: trial ids continue across runs.
                tuner_name=tuner_name,
                suffix_tuner_name=False,
                callbacks=[StoreResultsCallback(), JournalCallback(journal, backend, epochs)],
                max_failures=max(0, max_failures - failed_before),
                save_tuner=False,
                metadata={"nasprune_method": method, "nasprune_search_space": space.name},
            )
            try:
                tuner.run()
            except ValueError as err:
                if tuner.tuning_status is None or tuner.tuning_status.num_trials_failed <= tuner.max_failures:
                    raise
                _record_ends(journal, tuner, epochs)
                _write_trials_table(journal, space, output_dir)
                raise NaspruneError(_failure_message(journal, max_failures, output_dir)) from err
        _record_ends(journal, tuner, epochs)
    search_seconds = time.perf_counter() - started
    trials = _write_trials_table(journal, space, output_dir)

    results = journal.results(space)
    if results.empty or "valid_error" not in results.columns:
        raise NaspruneError(
            f"no trial finished an epoch within the budget; see each trial's status and error in "
            f"{output_dir / TRIALS_TABLE} and the trial logs in {syne_tune_path / tuner_name}"
        )
    statuses = {int(row.trial_id): row.status for row in trials.itertuples()}
    table = best_epoch_table(results, space, statuses)
    table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
    reference = analysis.reference_point(len(metrics))
    trace = hypervolume_trace(results, metrics, reference)
    summary = _summary(
        table, trials, space, metrics,
        model=model, task=task, method=method, seed=seed, data_seed=data_options.seed, epochs=epochs,
        n_workers=n_workers, budget={"max_wallclock_time": max_wallclock_time, "max_trials": max_trials},
        max_failures=max_failures,
        training={"learning_rate": learning_rate, "batch_size": batch_size, "warmup_ratio": warmup_ratio,
                  "num_threads": fixed["num_threads"], "num_gpus": num_gpus},
        search_seconds=journal.elapsed_before + search_seconds if tuner is None else journal.elapsed(),
        num_trials_started=len(trials), runs=journal.num_runs,
        syne_tune={"tuner_name": tuner_name, "path": str(syne_tune_path / tuner_name)},
    )
    return _write_outputs(table, summary, metrics, trace, output_dir, results, tuner)


def _record_ends(journal: TrialJournal, tuner: Any, epochs: int, running_too: bool = True) -> None:
    """Write the end of the trials of this run that ended into the journal (with ``running_too``
    every trial: the tuner stopped the running ones): the status, and the last line of the error
    output of a failed trial (``std.err`` in its Syne Tune folder)."""
    seen = tuner.tuning_status.last_trial_status_seen if tuner.tuning_status is not None else {}
    for trial_id in tuner.trial_backend.trial_ids:
        record = journal.trials.get(trial_id)
        if record is None or record.status is not None:
            continue
        if not running_too and seen.get(trial_id) not in (Status.completed, Status.failed, Status.stopped):
            continue
        epochs_run = max((int(r["epoch"]) for r in record.results), default=0)
        status = trial_status(epochs_run, epochs, seen.get(trial_id, ""), trial_id in tuner.trials_scheduler_stopped)
        journal.record_end(trial_id, status, last_error_line(record.path) if status == "failed" else None)


def _write_trials_table(journal: TrialJournal, space: SearchSpace, output_dir: Path) -> pd.DataFrame:
    """``trials.csv``: one row per started trial, reported or not, with its status and error."""
    rows = []
    for first, chain in journal.experiment_trials().items():
        results = journal.chain_results(chain)
        best = min(results, key=lambda r: r["valid_error"]) if results else {}
        config = chain[0].config
        row: dict[str, Any] = {"trial_id": first, "status": journal.final_status(chain)}
        row["epochs"] = max((int(r["epoch"]) for r in results), default=0)
        row["valid_error"] = best.get("valid_error", float("nan"))
        row["relative_params"] = best.get("relative_params", float("nan"))
        row["error"] = next((r.error for r in reversed(chain) if r.error), "")
        row["restarts"] = len(chain) - 1
        row["log"] = str(Path(chain[-1].path) / "std.err") if chain[-1].path else ""
        if space.num_variables <= 64:
            row.update({f"config_{name}": config[name] for name in space.variable_names})
        row["subnet"] = json.dumps(space.to_subnet(config).to_dict())
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["trial_id", "status", "epochs", "error"])
    write_csv_atomic(table, output_dir / TRIALS_TABLE)
    return table


def _describe_budget(max_wallclock_time: float | None, max_trials: int | None) -> str:
    parts = []
    if max_wallclock_time is not None:
        parts.append(f"{max_wallclock_time:.0f}s")
    if max_trials is not None:
        parts.append(f"{max_trials} trials")
    return " or ".join(parts)


def _failure_message(journal: TrialJournal, max_failures: int, output_dir: Path) -> str:
    failed = [chain[-1] for chain in journal.experiment_trials().values() if chain[-1].status == "failed"]
    first = failed[0] if failed else None
    return (
        f"{len(failed)} trials failed (more than --max-failures {max_failures}); trial "
        f"{first.trial_id if first else '?'} with: {(first.error if first else None) or 'no error output'} "
        f"(log: {Path(first.path) / 'std.err' if first and first.path else '?'}); every trial's status and "
        f"error: {output_dir / TRIALS_TABLE}"
    )


def _summary(
    table: pd.DataFrame, trials: pd.DataFrame, space: SearchSpace, metrics: list[str], *,
    model: str, task: str, method: str, seed: int, **fields: Any,
) -> dict[str, Any]:
    columns = [c for c in REPORTED + LATENCY_REPORTED if c in table.columns]
    counts = trials["status"].value_counts()
    failed = trials[trials["status"] == "failed"]
    run = {
        **fields,
        "trial_counts": {"started": len(trials), **{status: int(counts.get(status, 0)) for status in TRIAL_STATUSES}},
        "failed_trials": [
            {"trial_id": int(row.trial_id), "error": row.error or None, "log": row.log or None}
            for row in failed.itertuples()
        ],
    }
    return build_summary(
        table, metrics, source={"task": task, "model": model}, method=method, search_space=space.name, seed=seed,
        run=run, full_model=_full_model(table, trials, space, columns), pareto_int_columns=("best_epoch", "epochs"),
    )


def _full_model(table: pd.DataFrame, trials: pd.DataFrame, space: SearchSpace, columns: list[str]) -> dict[str, Any]:
    """The unpruned model's trial (the initial design's largest network): its best epoch when it
    reported one, otherwise its status and why there is no result."""
    full = json.dumps(space.to_subnet(space.largest()).to_dict())
    reported = table[table["subnet"] == full]
    if len(reported):
        row = reported.iloc[0]
        return {"trial_id": int(row["trial_id"]), "status": row["status"], **{c: row[c] for c in columns}}
    started = trials[trials["subnet"] == full]
    if not len(started):
        return {"trial_id": None, "status": "not started",
                "reason": "the budget ended before the full model's trial started"}
    row = started.iloc[0]
    return {
        "trial_id": int(row["trial_id"]), "status": row["status"],
        "reason": f"the full model's trial reported no epoch ({row['status']}"
        + (f": {row['error']}" if row["error"] else "") + ")",
    }


def _write_outputs(
    table: pd.DataFrame, summary: dict, metrics: list[str], trace: pd.DataFrame,
    output_dir: Path, results: pd.DataFrame, tuner: Any,
) -> StandardNASResult:
    # results.csv, summary.json, pareto.md and pareto.png exactly as the weight-sharing search.
    written = write_results(table, summary, metrics, output_dir)
    files = dict(written.files)
    files["hypervolume_table"] = write_csv_atomic(trace, output_dir / "hypervolume_over_time.csv")
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    files["hypervolume_plot"] = plot_hypervolume(trace, output_dir / "hypervolume_over_time.png", title)
    files["trials_table"] = output_dir / TRIALS_TABLE
    files["journal"] = output_dir / JOURNAL_FILE
    summary["files"] = {name: str(path) for name, path in files.items()}
    write_json_atomic(summary, files["summary"])
    return StandardNASResult(table, summary, output_dir, files, trace, results, tuner)
