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
``pareto.png``, ``pareto.md``; one row per trial, at its best validation epoch, with the test
error of that epoch) plus the hypervolume over wall-clock time (``hypervolume_over_time.csv``
and ``.png``), all at the fixed reference point of :mod:`nasprune.workflows`.

>>> from nasprune.workflows import DataOptions
>>> result = run_standard_nas(None, DataOptions(task="rotten_tomatoes", max_seq_length=64),
...                           "out/snas", method="moasha", n_workers=2, max_wallclock_time=1800)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import pandas as pd
from syne_tune.backend.trial_status import Status, Trial
from syne_tune.constants import ST_TUNER_TIME, SYNE_TUNE_ENV_FOLDER
from syne_tune.optimizer.scheduler import TrialScheduler, TrialSuggestion
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import nondominated_sort

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.search.encoding import Config, ConfigEncoder
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SEARCH_SPACES, SearchSpace
from nasprune.workflows import SearchResult

if TYPE_CHECKING:  # nasprune.workflows imports torch: only when a search really runs
    from nasprune.workflows import DataOptions

logger = logging.getLogger("nasprune")

STANDARD_NAS_METHODS = ("moasha", *METHODS)
#: The training script every trial runs.
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: MO-ASHA's rungs: the first after one epoch, then every factor of 3 (Schmucker et al. 2021).
GRACE_PERIOD = 1
REDUCTION_FACTOR = 3
#: A space with more variables is passed to the workers as a JSON file, not as arguments.
MAX_ARGUMENT_VARIABLES = 100


# --- schedulers -----------------------------------------------------------------------------
class ParetoRankPriority(MOPriority):
    """Syne Tune's non-dominated sort (fronts, then an epsilon-net within each front) as one
    priority per result: lower is better.

    MO-ASHA's rungs rank the newest result among those recorded at the rung from the priority
    of each row. Syne Tune 0.16's ``NonDominatedPriority`` returns the sort *order* (row
    indices, best first) instead, so a rung judges whichever row sorts last rather than the new
    result: a new result that is third of four continues when row 0 sorts last. Inverting the
    permutation gives each row its rank.
    """

    def __init__(self, dim: int | None = 0):
        super().__init__()
        self.dim = dim

    def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
        order = nondominated_sort(objectives, dim=self.dim)
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(len(order))
        return ranks


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

    def _sample(self) -> Config:
        return self._encoder.decode(self._encoder.sample(self._rng))


class TrialLimit(TrialScheduler):
    """Runs ``scheduler`` for at most ``max_trials`` trials, and lets the last ones finish.

    Syne Tune's ``StoppingCriterion(max_num_trials_started=N)`` fires once *more* than N trials
    were started, after which the tuner kills the running ones. A scheduler that runs dry
    instead (``suggest`` returns None) makes the tuner wait for the running trials and finish:
    exactly N trials, each trained as far as its scheduler lets it.
    """

    def __init__(self, scheduler: TrialScheduler, max_trials: int):
        super().__init__(random_seed=scheduler.random_seed)
        self.scheduler = scheduler
        self.max_trials = max_trials
        self.num_started = 0

    def suggest(self) -> TrialSuggestion | None:
        if self.num_started >= self.max_trials:
            return None
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


def trial_status(epochs_run: int, epochs: int, syne_tune_status: str, scheduler_stopped: bool) -> str:
    """``completed`` (all epochs), ``stopped_early`` (by MO-ASHA), ``interrupted`` (the budget
    ran out or the trial was stopped from outside) or ``failed``."""
    if epochs_run >= epochs:
        return "completed"
    if scheduler_stopped:
        return "stopped_early"
    if syne_tune_status == Status.failed:
        return "failed"
    return "interrupted"


def best_epoch_table(
    results: pd.DataFrame,
    space: SearchSpace,
    epochs: int,
    statuses: dict[int, str] | None = None,
    scheduler_stopped: set[int] | frozenset[int] = frozenset(),
) -> pd.DataFrame:
    """One row per trial that reported at least one epoch, at its best validation epoch.

    :param results: Syne Tune's results (``load_experiment(...).results`` or the tuner's
        ``StoreResultsCallback``): one row per report, with ``config_<name>`` columns.
    :param space: The search space the configs belong to.
    :param epochs: The epochs a trial trains when never stopped.
    :param statuses: Syne Tune's final status per trial id (for the ``status`` column).
    :param scheduler_stopped: Ids of the trials the scheduler stopped.
    :return: Columns ``trial_id``, ``config_<variable>`` (spaces of at most 64 variables), the
        reported metrics of the best epoch (lowest ``valid_error``, the earliest among ties;
        the size does not change between epochs), ``best_epoch``, ``epochs`` (run),
        ``status``, ``trial_seconds`` (the trial's working time up to the best epoch),
        ``elapsed_seconds`` (the tuner's wall-clock time when the best epoch was reported),
        the sub-network's layout and ``subnet`` (JSON).
    """
    statuses = statuses or {}
    ordered = results.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    best = ordered.loc[ordered.groupby("trial_id")["valid_error"].idxmin()].reset_index(drop=True)
    epochs_run = ordered.groupby("trial_id")["epoch"].max()
    rows = []
    for record in best.to_dict("records"):
        trial_id = int(record["trial_id"])
        config = {name: record[f"config_{name}"] for name in space.variable_names}
        subnet = space.to_subnet(config)
        row: dict[str, Any] = {"trial_id": trial_id}
        if space.num_variables <= 64:  # the large space's 37k bits stay in 'subnet' only
            row.update({f"config_{name}": int(value) for name, value in config.items()})
        row.update({name: record[name] for name in REPORTED + LATENCY_REPORTED if name in record})
        row["best_epoch"] = int(record["epoch"])
        row["epochs"] = int(epochs_run[trial_id])
        row["status"] = trial_status(
            row["epochs"], epochs, statuses.get(trial_id, ""), trial_id in scheduler_stopped
        )
        row["trial_seconds"] = record["elapsed_seconds"]
        row["elapsed_seconds"] = record[ST_TUNER_TIME]
        row["num_layers"] = len(subnet.kept_layers)
        row["heads_per_layer"] = json.dumps(subnet.heads_per_layer.tolist())
        row["units_per_layer"] = json.dumps(subnet.units_per_layer.tolist())
        row["subnet"] = json.dumps(subnet.to_dict())
        rows.append(row)
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
    return analysis._write_atomic(path, lambda handle: figure.savefig(handle, format="png"), binary=True)


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


def _metric_columns(objectives: Sequence[str]) -> list[str]:
    from nasprune.workflows import SearchOptions

    return SearchOptions(objectives=tuple(objectives)).metric_columns()


def _model_shape(model: str):
    """The shape of ``model`` from its config alone: the weights are the workers' business."""
    from transformers import AutoConfig

    from nasprune.subnet import ModelShape
    from nasprune.supernet import get_adapter

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load model {model!r}: {err}") from err
    get_adapter(getattr(config, "model_type", ""))  # refuses unsupported families
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
    values.pop("seed")  # each trial's seed seeds its split as well, as in nasprune's other commands
    return {k: v for k, v in values.items() if v is not None}, task_data.spec.name


def default_threads_per_worker(n_workers: int) -> int:
    """The cores this process may use, shared evenly by ``n_workers`` trials (at least 1 each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // n_workers)


@contextlib.contextmanager
def _syne_tune_folder(path: Path) -> Iterator[None]:
    """Point Syne Tune's experiment folder (``$SYNETUNE_FOLDER``) at ``path`` inside the block."""
    previous = os.environ.get(SYNE_TUNE_ENV_FOLDER)
    os.environ[SYNE_TUNE_ENV_FOLDER] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SYNE_TUNE_ENV_FOLDER, None)
        else:
            os.environ[SYNE_TUNE_ENV_FOLDER] = previous


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
    max_failures: int = 3,
    sleep_time: float = 2.0,
    keep_checkpoints: bool = False,
) -> StandardNASResult:
    """Standard NAS: fine-tune candidate sub-networks of ``model`` as Syne Tune trials.

    :param model: HF model name or path; None: the offline MiniLM-L6.
    :param data_options: Task or files, sequence length and sample caps.
    :param output_dir: Where the results go; Syne Tune's experiment folder (results of every
        epoch, trial logs) is ``output_dir/syne-tune/<tuner name>``.
    :param search_space: One of :data:`nasprune.spaces.SEARCH_SPACES`.
    :param method: One of :data:`STANDARD_NAS_METHODS`.
    :param n_workers: Trials run at the same time. With GPUs each trial gets its own while
        there are enough; on CPU the cores are split between the workers.
    :param max_wallclock_time: Stop after this many seconds; running trials are stopped and
        keep the epochs they reported.
    :param max_trials: Start at most this many trials, and let them finish.
    :param epochs: Fine-tuning epochs of a trial (MO-ASHA's ``max_t``).
    :param seed: Seeds the data split, the training and the search.
    :param objectives: ``error`` followed by one or more of ``params``, ``macs`` and ``latency``.
    :param latency_batch_size: With ``latency``: the batch size each trial times its model at.
    :param latency_seq_length: With ``latency``: the sequence length (default: ``max_seq_length``).
    :param num_threads: Torch threads per trial; default: the cores split across the workers.
    :param max_failures: Stop the search after more failed trials than this.
    :param sleep_time: How often (seconds) the tuner polls the trials.
    :param keep_checkpoints: Keep every trial's last checkpoint (weights and optimizer state).
    :raises NaspruneError: For an impossible budget, an unknown method, space, task or model,
        or when too many trials failed (the message points to their logs).
    """
    import torch
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.results_callback import StoreResultsCallback

    from nasprune.spaces import get_search_space
    from nasprune.workflows import REFERENCE_POINT, check_latency_settings, default_model

    _check_budget(method, n_workers, epochs, max_wallclock_time, max_trials)
    metrics = _metric_columns(objectives)
    if search_space not in SEARCH_SPACES:
        raise NaspruneError(f"unknown search space '{search_space}'; choose one of: {', '.join(SEARCH_SPACES)}")
    if num_threads is not None and num_threads < 1:
        raise NaspruneError(f"--num-threads must be at least 1, got {num_threads}")
    model = _absolute(model) or default_model()
    space = get_search_space(search_space, _model_shape(model))
    data_options = replace(data_options, seed=seed)
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
        check_latency_settings(latency_batch_size, latency_seq_length)
        # Every trial times its own sliced sub-network and the full model in the same process, so
        # the ratio holds even when workers share the cores and the absolute times are inflated.
        fixed["measure_latency"] = 1
        fixed["latency_batch_size"] = latency_batch_size
        fixed["latency_seq_length"] = latency_seq_length or data_options.max_seq_length
    config_space = {**space.config_space, **fixed}
    initial_design = [{**point, **fixed} for point in space.initial_design()]
    scheduler = make_standard_nas_scheduler(method, config_space, metrics, epochs, initial_design, seed, space)
    if max_trials is not None:
        scheduler = TrialLimit(scheduler, max_trials)

    # LocalBackend builds a command line by splitting on spaces: values with blanks, and the
    # 37k variables of the large space, travel in a JSON file instead.
    as_json = space.num_variables > MAX_ARGUMENT_VARIABLES or any(
        isinstance(v, str) and any(c.isspace() for c in v) for v in fixed.values()
    )
    backend = LocalBackend(
        entry_point=str(WORKER_SCRIPT),
        delete_checkpoints=not keep_checkpoints,
        pass_args_as_json=as_json,
        # One GPU per trial while there are enough. (Asking Syne Tune to find out itself runs
        # nvidia-smi and leaves its output as std.out in the working directory.)
        rotate_gpus=num_gpus > 1,
    )
    output_dir = Path(output_dir)
    store = StoreResultsCallback()
    logger.info(
        "standard NAS with %s over the '%s' space: %d workers (%s), %d epochs per trial, budget %s",
        method, space.name, n_workers,
        f"{num_gpus} GPUs" if num_gpus else f"{fixed['num_threads']} CPU threads each",
        epochs, _describe_budget(max_wallclock_time, max_trials),
    )
    started = time.perf_counter()
    with _syne_tune_folder(output_dir / "syne-tune"):
        tuner = Tuner(
            trial_backend=backend,
            scheduler=scheduler,
            # The trial limit is exact through TrialLimit; the criterion also records it.
            stop_criterion=StoppingCriterion(
                max_wallclock_time=max_wallclock_time, max_num_trials_started=max_trials
            ),
            n_workers=n_workers,
            sleep_time=sleep_time,
            tuner_name=f"nasprune-{method.replace('_', '-')}",
            callbacks=[store],
            max_failures=max_failures,
            save_tuner=False,
            metadata={"nasprune_method": method, "nasprune_search_space": space.name},
        )
        try:
            tuner.run()
        except ValueError as err:
            if tuner.tuning_status is None or tuner.tuning_status.num_trials_failed <= max_failures:
                raise
            raise NaspruneError(_failure_message(tuner, backend)) from err
    search_seconds = time.perf_counter() - started

    results = store.dataframe()
    if results.empty or "valid_error" not in results.columns:
        raise NaspruneError(
            f"no trial finished an epoch within the budget; see the trial logs in {tuner.tuner_path}"
        )
    statuses = dict(tuner.tuning_status.last_trial_status_seen)
    table = best_epoch_table(results, space, epochs, statuses, set(tuner.trials_scheduler_stopped))
    table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
    reference = [REFERENCE_POINT] * len(metrics)
    trace = hypervolume_trace(results, metrics, reference)
    summary = _summary(
        table, space, metrics, reference,
        model=model, task=task, method=method, seed=seed, epochs=epochs,
        n_workers=n_workers, budget={"max_wallclock_time": max_wallclock_time, "max_trials": max_trials},
        training={"learning_rate": learning_rate, "batch_size": batch_size, "warmup_ratio": warmup_ratio,
                  "num_threads": fixed["num_threads"], "num_gpus": num_gpus},
        search_seconds=search_seconds, num_trials_started=tuner.tuning_status.num_trials_started,
        syne_tune={"tuner_name": tuner.name, "path": str(tuner.tuner_path)},
    )
    return _write_outputs(table, summary, metrics, trace, output_dir, results, tuner)


def _describe_budget(max_wallclock_time: float | None, max_trials: int | None) -> str:
    parts = []
    if max_wallclock_time is not None:
        parts.append(f"{max_wallclock_time:.0f}s")
    if max_trials is not None:
        parts.append(f"{max_trials} trials")
    return " or ".join(parts)


def _failure_message(tuner: Any, backend: Any) -> str:
    failed = [t for t, s in tuner.tuning_status.last_trial_status_seen.items() if s == Status.failed]
    lines = [line.strip() for line in backend.stderr(failed[0]) if line.strip()] if failed else []
    last = lines[-1] if lines else "no error output"
    return (
        f"{len(failed)} trials failed, trial {failed[0] if failed else '?'} with: {last} "
        f"(logs: {backend.trial_path(failed[0]) if failed else tuner.tuner_path})"
    )


def _summary(
    table: pd.DataFrame, space: SearchSpace, metrics: list[str], reference: list[float], *,
    model: str, task: str, method: str, seed: int, **fields: Any,
) -> dict[str, Any]:
    pareto = table[table["pareto"]].sort_values(metrics[1])
    columns = [c for c in REPORTED + LATENCY_REPORTED if c in table.columns]
    full_subnet = space.to_subnet(space.largest()).to_dict()
    full_rows = [r for r in table.itertuples() if json.loads(r.subnet) == full_subnet]
    full_model = None
    if full_rows:  # the initial design's largest network, when it reported an epoch
        full_model = {"trial_id": int(full_rows[0].trial_id), **{c: getattr(full_rows[0], c) for c in columns}}
    return {
        "task": task,
        "model": model,
        "method": method,
        "search_space": space.name,
        "seed": seed,
        "objectives": metrics,
        "num_evaluated": len(table),
        **fields,
        "hypervolume": analysis.hypervolume(table[metrics].to_numpy(dtype=float), reference),
        "reference_point": reference,
        "full_model": full_model,
        "pareto_set": [
            {
                "trial_id": int(row.trial_id),
                **{c: getattr(row, c) for c in columns},
                "best_epoch": int(row.best_epoch),
                "epochs": int(row.epochs),
                "subnet": json.loads(row.subnet),
            }
            for row in pareto.itertuples()
        ],
    }


def _write_outputs(
    table: pd.DataFrame, summary: dict, metrics: list[str], trace: pd.DataFrame,
    output_dir: Path, results: pd.DataFrame, tuner: Any,
) -> StandardNASResult:
    from nasprune.workflows import _write_search_outputs

    # results.csv, summary.json, pareto.md and pareto.png exactly as the weight-sharing search.
    written = _write_search_outputs(table, summary, metrics, output_dir)
    files = dict(written.files)
    files["hypervolume_table"] = analysis.write_csv_atomic(trace, output_dir / "hypervolume_over_time.csv")
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    files["hypervolume_plot"] = plot_hypervolume(trace, output_dir / "hypervolume_over_time.png", title)
    summary["files"] = {name: str(path) for name, path in files.items()}
    analysis.write_json_atomic(summary, files["summary"])
    return StandardNASResult(table, summary, output_dir, files, trace, results, tuner)


# --- the command line -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune nas``."""
    from nasprune.cli import _add_data_flags, add_objective_flags  # here: nasprune.cli imports this module

    _add_data_flags(parser)
    group = parser.add_argument_group("search")
    group.add_argument("--search-space", default="small", help="small, small_pow2, medium, layer or large")
    group.add_argument(
        "--method",
        default="moasha",
        help="moasha (multi-fidelity, stops weak trials early), nsga2, ehvi, morea, local_search "
        "or random_search",
    )
    group.add_argument("--n-workers", type=int, default=2, help="trials running at the same time")
    budget = group.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-wallclock-time", type=float, help="stop after this many seconds")
    budget.add_argument("--max-trials", type=int, help="start this many trials and let them finish")
    add_objective_flags(group)  # with latency, each trial times its sub-network in its own process
    group.add_argument("--output-dir", required=True)
    training = parser.add_argument_group("training (every trial)")
    training.add_argument("--epochs", type=int, default=3, help="epochs per trial (MO-ASHA's max_t)")
    training.add_argument("--learning-rate", type=float, default=2e-5)
    training.add_argument("--batch-size", type=int, default=32)
    training.add_argument("--warmup-ratio", type=float, default=0.1)
    training.add_argument("--eval-batch-size", type=int, default=128)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument(
        "--num-threads", type=int, help="CPU threads per trial (default: the cores split across the workers)"
    )


def run_from_args(args: argparse.Namespace) -> StandardNASResult:
    """``nasprune nas``."""
    from nasprune.workflows import DataOptions, _check_task_given

    _check_task_given(args)
    result = run_standard_nas(
        args.model,
        DataOptions.from_args(args),
        args.output_dir,
        search_space=args.search_space,
        method=args.method,
        n_workers=args.n_workers,
        max_wallclock_time=args.max_wallclock_time,
        max_trials=args.max_trials,
        epochs=args.epochs,
        seed=args.seed,
        objectives=[o.strip() for o in args.objectives.split(",") if o.strip()],
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        warmup_ratio=args.warmup_ratio,
        macs_seq_length=args.macs_seq_length,
        latency_batch_size=args.latency_batch_size,
        latency_seq_length=args.latency_seq_length,
        eval_batch_size=args.eval_batch_size,
        num_threads=args.num_threads,
    )
    print_summary(result)
    return result


def print_summary(result: StandardNASResult) -> None:
    from nasprune.workflows import print_search_summary

    summary = result.summary
    counts = result.table["status"].value_counts().to_dict()
    print_search_summary(result, headline=(
        f"\n{summary['num_evaluated']} sub-networks fine-tuned in {summary['search_seconds']:.0f}s "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}); "
        f"hypervolume {summary['hypervolume']:.4f}"
    ))
