"""Running standard NAS: :func:`run_standard_nas` checks every setting, opens the experiment's
journal, runs a Syne Tune ``Tuner`` whose trials are :mod:`nasprune.snas.worker` on a
``LocalBackend`` (or, with ``backend="ray"``, Ray tasks on a cluster:
:mod:`nasprune.snas.ray_backend`, imported only then), and writes the result tables.

torch and transformers load only when a search runs (in :func:`run_standard_nas`), so that
``import nasprune.snas`` stays light for a user who only wants its schedulers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from syne_tune import StoppingCriterion, Tuner
from syne_tune.constants import SYNE_TUNE_ENV_FOLDER
from syne_tune.results_callback import StoreResultsCallback

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.objectives import EVAL_BATCH_SIZE, check_latency_settings, metric_columns
from nasprune.snas.journal import TrialJournal
from nasprune.snas.protocol import TUNER_PID_ENV
from nasprune.snas.resume import (
    ContinuingLocalBackend,
    JournalCallback,
    record_ends,
    recover_unread_reports,
    replay,
)
from nasprune.snas.storage import join as storage_join
from nasprune.snas.schedulers import STANDARD_NAS_METHODS, TrialLimit, make_standard_nas_scheduler
from nasprune.snas.tables import (
    TRIALS_TABLE,
    StandardNASResult,
    best_epoch_table,
    hypervolume_trace,
    standard_nas_summary,
    write_standard_nas_outputs,
    write_trials_table,
)
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import ModelShape

if TYPE_CHECKING:  # nasprune.data imports torch: only when a search really runs
    from nasprune.data import DataOptions

logger = logging.getLogger("nasprune")

#: The training script every trial runs.
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: A space with more variables is passed to the workers as a JSON file, not as arguments.
MAX_ARGUMENT_VARIABLES = 100


#: Where trials run: ``local`` (Syne Tune's ``LocalBackend``, processes on this machine) or
#: ``ray`` (:class:`nasprune.snas.ray_backend.RayTrialBackend`, Ray tasks on a cluster).
BACKENDS = ("local", "ray")
#: The one line a user without Ray reads.
RAY_MISSING = "--backend ray needs Ray, which is not installed: pip install 'nasprune[ray]'"


def _check_budget(
    method: str, n_workers: int | None, epochs: int, max_wallclock_time: float | None, max_trials: int | None
) -> None:
    if method not in STANDARD_NAS_METHODS:
        raise NaspruneError(
            f"unknown search method '{method}'; choose one of: {', '.join(STANDARD_NAS_METHODS)}"
        )
    if n_workers is not None and n_workers < 1:
        raise NaspruneError(f"--n-workers must be at least 1, got {n_workers}")
    if epochs < 1:
        raise NaspruneError(f"--epochs must be at least 1, got {epochs}")
    if max_wallclock_time is None and max_trials is None:
        raise NaspruneError("give a budget: --max-wallclock-time SECONDS or --max-trials N")
    if max_wallclock_time is not None and not max_wallclock_time > 0:
        raise NaspruneError(f"--max-wallclock-time must be positive, got {max_wallclock_time}")
    if max_trials is not None and max_trials < 1:
        raise NaspruneError(f"--max-trials must be at least 1, got {max_trials}")


def _model_shape(model: str, sequence_lengths: Sequence[int] = ()) -> ModelShape:
    """The shape of ``model`` from its config alone (the weights are the workers' business);
    refuses sequence lengths beyond the model's positions."""
    # transformers and nasprune.supernet (torch) load only when a search runs: see the module docstring.
    from transformers import AutoConfig

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


@dataclass
class _Cluster:
    """Where this run's trials go: the backend settings the launcher resolved."""

    name: str
    n_workers: int
    num_gpus: int
    description: dict[str, Any]
    ray_resources: Any = None  # nasprune.snas.ray_backend.TrialResources


def _check_backend(
    backend: str, ray_address: str | None, storage: str | None, cpus_per_trial: float | None,
    gpus_per_trial: float | None, max_retries: int,
) -> None:
    if backend not in BACKENDS:
        raise NaspruneError(f"unknown --backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend == "local":
        given = [flag for flag, value in (("--ray-address", ray_address), ("--storage", storage),
                 ("--cpus-per-trial", cpus_per_trial), ("--gpus-per-trial", gpus_per_trial)) if value is not None]
        if given:
            raise NaspruneError(f"{', '.join(given)} only apply with --backend ray")
    if cpus_per_trial is not None and not cpus_per_trial > 0:
        raise NaspruneError(f"--cpus-per-trial must be positive, got {cpus_per_trial}")
    if gpus_per_trial is not None and not gpus_per_trial >= 0:
        raise NaspruneError(f"--gpus-per-trial must be at least 0, got {gpus_per_trial}")
    if max_retries < 0:
        raise NaspruneError(f"--max-retries must be at least 0, got {max_retries}")


def _import_ray_backend() -> Any:
    """:mod:`nasprune.snas.ray_backend`, which imports Ray: only for ``--backend ray``."""
    try:
        from nasprune.snas import ray_backend
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] == "ray":
            raise NaspruneError(RAY_MISSING) from None
        raise
    return ray_backend


def _ray_cluster(
    ray_backend: Any, n_workers: int | None, storage: str | None, cpus_per_trial: float | None,
    gpus_per_trial: float | None, max_retries: int,
) -> _Cluster:
    """One GPU per trial where the cluster has GPUs, one CPU otherwise (both configurable), and by
    default as many trials at a time as the cluster has room for."""
    available = ray_backend.cluster_resources()
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if available["GPU"] >= 1 else 0.0
    cpus_per_trial = 1.0 if cpus_per_trial is None else cpus_per_trial
    if gpus_per_trial > available["GPU"] or cpus_per_trial > available["CPU"]:
        raise NaspruneError(
            f"a trial asks for {cpus_per_trial:g} CPUs and {gpus_per_trial:g} GPUs, but the Ray cluster has "
            f"{available['CPU']:g} CPUs and {available['GPU']:g} GPUs; lower --cpus-per-trial or --gpus-per-trial"
        )
    if n_workers is None:
        room = [available["CPU"] / cpus_per_trial] + ([available["GPU"] / gpus_per_trial] if gpus_per_trial else [])
        n_workers = max(1, int(min(room)))
    if available["nodes"] > 1 and storage is None:
        logger.warning(
            "the Ray cluster has %d nodes and no --storage was given: each trial keeps its checkpoint on the "
            "disk of its node, so a trial retried on another node starts afresh; pass --storage with a "
            "shared folder or a URI (s3://...) to resume it there", available["nodes"],
        )
    resources = ray_backend.TrialResources(cpus_per_trial, gpus_per_trial, max_retries)
    description = {
        "name": "ray", "nodes": available["nodes"], "cluster_cpus": available["CPU"],
        "cluster_gpus": available["GPU"], "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
        "max_retries": max_retries, "storage": storage,
    }
    return _Cluster("ray", n_workers, int(available["GPU"]), description, resources)


def default_max_failures(max_trials: int | None) -> int:
    """Failed trials a search survives: the larger of 3 and a tenth of the trial budget."""
    return max(3, math.ceil(max_trials / 10)) if max_trials is not None else 3


def run_standard_nas(
    model: str | None,
    data_options: DataOptions,
    output_dir: str | os.PathLike,
    *,
    search_space: str = "small",
    method: str = "moasha",
    n_workers: int | None = None,
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
    eval_batch_size: int = EVAL_BATCH_SIZE,
    num_threads: int | None = None,
    max_failures: int | None = None,
    sleep_time: float = 2.0,
    keep_checkpoints: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    worker_script: str | os.PathLike | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    storage: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_retries: int = 3,
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
    :param n_workers: Trials run at the same time. Locally (default 2): with GPUs each trial
        gets its own while there are enough; on CPU the cores are split between the workers. On
        Ray (default: as many as the cluster has room for), Ray places each trial on a node with
        the resources it asks for.
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
    :param worker_script: The script each trial runs (default :data:`WORKER_SCRIPT`; local backend).
    :param backend: ``local`` (trials are processes on this machine) or ``ray`` (trials are Ray
        tasks: :mod:`nasprune.snas.ray_backend`).
    :param ray_address: With ``ray``: the cluster (``auto``, ``HOST:PORT``); None: ``RAY_ADDRESS``,
        or Ray started on this machine.
    :param storage: With ``ray``: a folder every node can reach, or a URI (``s3://bucket/path``),
        for the trials' checkpoints; default: Syne Tune's folder in ``output_dir``.
    :param cpus_per_trial: With ``ray``: CPUs each trial asks for (default 1).
    :param gpus_per_trial: With ``ray``: GPUs each trial asks for (default 1 when the cluster has
        GPUs, else 0; fractions share a GPU).
    :param max_retries: With ``ray``: how often Ray runs a trial again after its node (or worker
        process) died; it resumes from its last checkpoint.
    :raises NaspruneError: For a bad setting (before any trial starts), an impossible budget,
        an unknown method, space, task or model, an experiment in ``output_dir`` with other
        settings, or when too many trials failed (the message points to their logs).
    """
    # torch and transformers load only when a search runs: see the module docstring.
    import torch

    from nasprune.session import default_model
    from nasprune.training import TrainingConfig

    # Every setting is checked here, before a model is loaded or a trial starts.
    _check_budget(method, n_workers, epochs, max_wallclock_time, max_trials)
    _check_backend(backend, ray_address, storage, cpus_per_trial, gpus_per_trial, max_retries)
    if backend == "ray" and worker_script is not None:
        raise NaspruneError("worker_script applies to the local backend; Ray trials run nasprune.snas.worker")
    ray_backend = _import_ray_backend() if backend == "ray" else None
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
    with contextlib.ExitStack() as cleanup:
        if ray_backend is not None:
            if ray_backend.connect(ray_address):
                cleanup.callback(ray_backend.ray.shutdown)
            cluster = _ray_cluster(ray_backend, n_workers, storage, cpus_per_trial, gpus_per_trial, max_retries)
            if num_threads is None:
                num_threads = max(1, int(cluster.ray_resources.cpus_per_trial))
        else:
            cluster = _Cluster("local", n_workers or 2, torch.cuda.device_count(), {"name": "local"})
        n_workers, num_gpus = cluster.n_workers, cluster.num_gpus
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
            if ray_backend is not None:
                backend = ray_backend.RayTrialBackend(
                    storage, cluster.ray_resources, on_placed=journal.record_placement,
                    first_trial_id=journal.next_trial_id, delete_checkpoints=not keep_checkpoints,
                )
                cleanup.callback(backend.close)
                where = (f"on Ray, {cluster.description['nodes']} nodes; each trial "
                         f"{cluster.ray_resources.cpus_per_trial:g} CPUs, {cluster.ray_resources.gpus_per_trial:g} GPUs")
            else:
                backend = ContinuingLocalBackend(
                    entry_point=str(worker_script or WORKER_SCRIPT),
                    delete_checkpoints=not keep_checkpoints,
                    pass_args_as_json=as_json,
                    # One GPU per trial while there are enough. (Asking Syne Tune to find out itself runs
                    # nvidia-smi and leaves its output as std.out in the working directory.)
                    rotate_gpus=num_gpus > 1,
                    first_trial_id=journal.next_trial_id,
                )
                where = f"{num_gpus} GPUs" if num_gpus else f"{fixed['num_threads']} CPU threads each"
            logger.info(
                "standard NAS with %s over the '%s' space: %d workers (%s), %d epochs per trial, budget %s",
                method, space.name, n_workers, where, epochs, _describe_budget(seconds_left, trials_left),
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
                    record_ends(journal, tuner, epochs)
                    write_trials_table(journal, space, output_dir)
                    raise NaspruneError(_failure_message(journal, max_failures, output_dir)) from err
            record_ends(journal, tuner, epochs)
        search_seconds = time.perf_counter() - started
        trials = write_trials_table(journal, space, output_dir)

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
        summary = standard_nas_summary(
            table, trials, space, metrics,
            model=model, task=task, method=method, seed=seed, data_seed=data_options.seed, epochs=epochs,
            n_workers=n_workers, budget={"max_wallclock_time": max_wallclock_time, "max_trials": max_trials},
            max_failures=max_failures,
            training={"learning_rate": learning_rate, "batch_size": batch_size, "warmup_ratio": warmup_ratio,
                      "num_threads": fixed["num_threads"], "num_gpus": num_gpus},
            search_seconds=journal.elapsed_before + search_seconds if tuner is None else journal.elapsed(),
            num_trials_started=len(trials), runs=journal.num_runs, backend=cluster.description,
            syne_tune={"tuner_name": tuner_name, "path": str(syne_tune_path / tuner_name)},
        )
        return write_standard_nas_outputs(table, summary, metrics, trace, output_dir, results, tuner)


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
        f"(log: {storage_join(first.path, 'std.err') if first and first.path else '?'}); every trial's status and "
        f"error: {output_dir / TRIALS_TABLE}"
    )
