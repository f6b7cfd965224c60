"""Standard NAS on a Ray cluster: a Syne Tune ``TrialBackend`` whose trials are Ray tasks.

Our Syne Tune schedulers keep making every decision (which config, which trial to stop), as with
``LocalBackend``; Ray only places the trials. Each trial is one Ray task that runs the worker's
:func:`~nasprune.snas.worker.run_trial` in a Ray worker process on whichever node has the
resources it asks for (``num_cpus``, ``num_gpus``; Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs
it grants). What Ray already does, it does here:

- **placement and resources:** the task's ``num_cpus`` / ``num_gpus``;
- **retries:** a task whose worker process or node dies is run again by Ray (``max_retries``),
  on any node; it resumes from the last checkpoint in the storage, and an exception raised by
  the trial itself (``retry_exceptions=False``) fails the trial at once, as a crash does locally;
- **reports:** a :class:`ray.util.queue.Queue` (a Ray actor on the driver's node) carries each
  epoch's result to the driver, where :class:`RayTrialBackend` hands it to the tuner;
- **stopping:** ``ray.cancel(force=True)`` ends a trial the scheduler stops;
- **storage:** trial checkpoints live in a folder or URI (:mod:`nasprune.snas.storage`, pyarrow's
  filesystems, as Ray's storage uses).

Why not Ray Tune with a searcher and scheduler that delegate to ours: two tuners would then own
each trial's life (Ray Tune's ``TrialScheduler`` decides on pauses and stops, Syne Tune's on
suggestions), our schedulers' ``on_trial_*`` calls would have to be translated both ways, and
the experiment record would be Ray Tune's pickled ``Tuner.restore`` state instead of our plain
journal. A backend keeps one tuner (Syne Tune's), one journal (``trials.jsonl``) and the same
result files, and Ray stays what it is good at: running tasks on a cluster.

Resuming a killed experiment works as on the local backend (:mod:`nasprune.snas.resume`): the
driver owns the tasks, so Ray ends them when the driver dies, and the rerun restarts unfinished
trials from their checkpoints in the storage.

This module imports Ray; :mod:`nasprune.snas.launch` imports it only for ``--backend ray``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from syne_tune.backend.trial_backend import TrialBackend
from syne_tune.backend.trial_status import Status, TrialResult
from syne_tune.constants import ST_CHECKPOINT_DIR, ST_CONFIG_JSON_FNAME_ARG, ST_WORKER_ITER, ST_WORKER_TIME, ST_WORKER_TIMESTAMP

from nasprune.errors import NaspruneError
from nasprune.snas import storage
from nasprune.snas.resume import ContinuingTrials, checkpointed_reports

logger = logging.getLogger("nasprune")

#: The messages a trial task sends the driver through the queue: (kind, trial id, payload).
PLACED = "placed"  # payload: the Ray node id the attempt runs on
CHECKPOINTED = "checkpointed"  # payload: the reports saved in the checkpoint the attempt starts from
REPORTED = "reported"  # payload: one epoch's result


@dataclass(frozen=True)
class TrialResources:
    """What each trial asks Ray for, and how often Ray runs it again after losing its node."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    #: Ray's ``max_retries``: attempts after the first when a trial's worker process or node dies.
    max_retries: int = 3


def connect(address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (``auto``: the one this machine belongs to), or
    start Ray on this machine when ``address`` is None and ``RAY_ADDRESS`` is not set.

    :return: Whether this call initialised Ray (the caller shuts it down again).
    :raises NaspruneError: When the cluster cannot be reached.
    """
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise NaspruneError(f"could not connect to the Ray cluster at {address or 'RAY_ADDRESS'}: {err}") from None
    return True


def cluster_resources() -> dict[str, float]:
    """The cluster's CPUs, GPUs and (alive) nodes."""
    resources = ray.cluster_resources()
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    return {"CPU": float(resources.get("CPU", 0)), "GPU": float(resources.get("GPU", 0)), "nodes": len(nodes)}


@contextlib.contextmanager
def _local_checkpoint(location: str) -> Iterator[Path]:
    """The trial's checkpoint folder as a local path: the folder itself for a plain path, or a
    local copy of the checkpoint at a URI (removed afterwards)."""
    if not storage.is_uri(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="nasprune-trial-") as folder:
        local = Path(folder) / "checkpoints"
        storage.download_folder(location, local)
        local.mkdir(exist_ok=True)
        yield local


def run_trial_task(trial_id: int, config: dict[str, Any], checkpoint_location: str, queue: Queue) -> None:
    """One attempt of a trial, in a Ray worker process: fine-tune the config's sub-network with
    the standard-NAS worker, and send each epoch's result to the driver.

    The attempt first tells the driver its node and the reports of the checkpoint it resumes
    from: when Ray retries a trial whose node died between saving an epoch and sending its
    report, the driver learns that epoch from here (it ignores epochs it already has).
    """
    # torch and transformers load in the Ray worker, not in the driver.
    from nasprune.snas import worker

    worker.configure_trial_process()
    queue.put((PLACED, trial_id, ray.get_runtime_context().get_node_id()))
    with _local_checkpoint(checkpoint_location) as local, tempfile.TemporaryDirectory() as scratch:
        queue.put((CHECKPOINTED, trial_id, checkpointed_reports(local)))
        config_file = Path(scratch) / "config.json"
        config_file.write_text(json.dumps(config))
        args, variables = worker.parse_config(
            [f"--{ST_CONFIG_JSON_FNAME_ARG}", str(config_file), f"--{ST_CHECKPOINT_DIR}", str(local)]
        )
        started = time.perf_counter()
        iteration = itertools.count()

        def report(**result: Any) -> None:
            # The worker saved this epoch's checkpoint before reporting it; it goes up to the
            # storage before the driver hears of the epoch.
            if storage.is_uri(checkpoint_location):
                storage.upload_checkpoint(local, checkpoint_location)
            result[ST_WORKER_TIMESTAMP] = time.time()
            result[ST_WORKER_TIME] = time.perf_counter() - started
            result[ST_WORKER_ITER] = next(iteration)
            queue.put((REPORTED, trial_id, result))

        try:
            worker.run_trial(args, variables, report)
        finally:
            # Ray reuses its worker processes: give back what this trial held on the GPU.
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


class RayTrialBackend(ContinuingTrials, TrialBackend):
    """A Syne Tune ``TrialBackend`` that runs each trial as a Ray task (see the module docstring).

    :param storage_root: Folder or URI for the trial folders (``<root>/<tuner name>/<trial id>``,
        with ``checkpoints/`` and, for a failed trial, ``std.err``); None: the tuner's own folder.
    :param resources: What each trial asks Ray for, and its retries.
    :param on_placed: Called with (trial id, node id) when an attempt of a trial starts on a node.
    :param first_trial_id: See :class:`~nasprune.snas.resume.ContinuingTrials`.
    :param delete_checkpoints: Delete a trial's checkpoint once it is stopped or the tuner ends.
    """

    def __init__(
        self,
        storage_root: str | None = None,
        resources: TrialResources = TrialResources(),
        *,
        on_placed: Callable[[int, str], None] | None = None,
        first_trial_id: int = 0,
        delete_checkpoints: bool = False,
    ):
        super().__init__(first_trial_id=first_trial_id, delete_checkpoints=delete_checkpoints)
        if not ray.is_initialized():
            raise NaspruneError("RayTrialBackend needs Ray: call nasprune.snas.ray_backend.connect() first")
        self.storage_root = storage_root
        self.resources = resources
        self.on_placed = on_placed
        self.root = storage_root or str(Path.cwd())  # set_path() names the tuner's folder
        #: The nodes each trial's attempts ran on, in order.
        self.nodes: dict[int, list[str]] = defaultdict(list)
        self._tasks: dict[int, ray.ObjectRef] = {}
        self._status: dict[int, str] = {}
        self._end_time: dict[int, datetime] = {}
        self._metrics: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._epochs_seen: dict[int, set[int]] = defaultdict(set)
        # The reports' queue lives on the driver's node: it must outlive any worker node.
        driver_node = ray.get_runtime_context().get_node_id()
        self._queue = Queue(actor_options={
            "num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(driver_node, soft=False),
        })
        self._remote = ray.remote(run_trial_task)

    # --- where trials keep their files -------------------------------------------------------
    def set_path(self, results_root: str | None = None, tuner_name: str | None = None) -> None:
        if self.storage_root is not None:
            self.root = storage.join(self.storage_root, tuner_name or "nasprune")
        elif results_root is not None:
            self.root = str(results_root)

    def trial_path(self, trial_id: int) -> str:
        return storage.join(self.root, str(trial_id))

    def checkpoint_trial_path(self, trial_id: int) -> str:
        return storage.join(self.trial_path(trial_id), "checkpoints")

    def copy_checkpoint(self, src_trial_id: int, tgt_trial_id: int) -> None:
        source = self.checkpoint_trial_path(src_trial_id)
        if storage.folder_exists(source):  # none when it died before its first epoch
            storage.copy_folder(source, self.checkpoint_trial_path(tgt_trial_id))

    def delete_checkpoint(self, trial_id: int) -> None:
        storage.delete_folder(self.checkpoint_trial_path(trial_id))

    def entrypoint_path(self) -> Path:
        return Path(__file__).with_name("worker.py")

    def set_entrypoint(self, entry_point: str) -> None:
        raise NaspruneError("the Ray backend runs nasprune.snas.worker's run_trial; it takes no other entry point")

    # --- running trials ------------------------------------------------------------------------
    def _schedule(self, trial_id: int, config: dict[str, Any]) -> None:
        checkpoint = self.checkpoint_trial_path(trial_id)
        # Epochs of the checkpoint a trial starts from were reported before (by the trial it
        # continues, or by itself before a pause): only a Ray retry may bring unreported ones.
        self._epochs_seen[trial_id] |= {int(r["epoch"]) for r in checkpointed_reports(checkpoint)}
        self._tasks[trial_id] = self._remote.options(
            name=f"nasprune-trial-{trial_id}",
            num_cpus=self.resources.cpus_per_trial,
            num_gpus=self.resources.gpus_per_trial,
            max_retries=self.resources.max_retries,
            retry_exceptions=False,
        ).remote(trial_id, config, checkpoint, self._queue)
        self._status[trial_id] = Status.in_progress
        self._end_time.pop(trial_id, None)

    def _poll(self) -> None:
        """Note the trials whose task ended, then take every message off the queue (a task puts
        its reports before it ends, so an ended trial's reports are all read here)."""
        running = {ref: trial_id for trial_id, ref in self._tasks.items() if self._status[trial_id] == Status.in_progress}
        if running:
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
            for ref in done:
                self._finish(running[ref], ref)
        size = self._queue.qsize()
        for kind, trial_id, payload in self._queue.get_nowait_batch(size) if size else []:
            if kind == PLACED:
                self.nodes[trial_id].append(payload)
                if self.on_placed is not None:
                    self.on_placed(trial_id, payload)
            elif kind == CHECKPOINTED:
                for result in payload:
                    if int(result["epoch"]) not in self._epochs_seen[trial_id]:
                        self._add_result(trial_id, {ST_WORKER_TIMESTAMP: time.time(), **result})
            elif not any(known["epoch"] == payload["epoch"] for known in self._metrics[trial_id]):
                # (A retry resumed after the last epoch reports that epoch again: known already.)
                self._add_result(trial_id, payload)

    def _add_result(self, trial_id: int, result: dict[str, Any]) -> None:
        self._epochs_seen[trial_id].add(int(result["epoch"]))
        self._metrics[trial_id].append(result)

    def _finish(self, trial_id: int, ref: ray.ObjectRef) -> None:
        self._end_time[trial_id] = datetime.now()
        try:
            ray.get(ref)
        except ray.exceptions.RayError as err:
            self._status[trial_id] = Status.failed
            self._write_error(trial_id, err)
        else:
            self._status[trial_id] = Status.completed

    def _write_error(self, trial_id: int, err: Exception) -> None:
        """Write the trial's error to ``std.err`` in its folder: Ray's traceback, then one line
        that says what went wrong (the journal and ``trials.csv`` show that line)."""
        cause = getattr(err, "cause", None) if isinstance(err, ray.exceptions.RayTaskError) else None
        if isinstance(cause, NaspruneError):
            line = f"nasprune.snas.worker: error: {cause}"
        elif cause is not None:
            line = f"{type(cause).__name__}: {cause}"
        else:  # the process or node died, more often than Ray retries
            first = next((text for text in str(err).splitlines() if text.strip()), "")
            line = f"{type(err).__name__} after {self.resources.max_retries} retries: {first}"
        try:
            storage.write_text(storage.join(self.trial_path(trial_id), "std.err"), f"{err}\n{line}\n")
        except OSError as write_error:
            logger.warning("could not write the error of trial %d: %s (%s)", trial_id, line, write_error)

    def _all_trial_results(self, trial_ids: list[int]) -> list[TrialResult]:
        self._poll()
        return [
            self._trial_dict[trial_id].add_results(
                metrics=list(self._metrics[trial_id]),
                status=self._status[trial_id],
                training_end_time=self._end_time.get(trial_id, datetime.now()),
            )
            for trial_id in trial_ids
        ]

    def busy_trial_ids(self) -> list[tuple[int, str]]:
        self._poll()
        return [(trial_id, status) for trial_id, status in self._status.items() if status == Status.in_progress]

    def _cancel(self, trial_id: int, status: str) -> None:
        if self._status.get(trial_id) == Status.in_progress:
            ray.cancel(self._tasks[trial_id], force=True)
            self._end_time[trial_id] = datetime.now()
        self._status[trial_id] = status

    def _stop_trial(self, trial_id: int, result: dict | None) -> None:
        self._cancel(trial_id, Status.stopped)

    def _pause_trial(self, trial_id: int, result: dict | None) -> None:
        self._cancel(trial_id, Status.paused)

    def _resume_trial(self, trial_id: int) -> None:
        pass  # _schedule starts it again, from its checkpoint

    def stdout(self, trial_id: int) -> list[str]:
        return []  # a trial's output goes to Ray's worker logs (and the driver's console)

    def stderr(self, trial_id: int) -> list[str]:
        try:
            return storage.read_text(storage.join(self.trial_path(trial_id), "std.err")).splitlines(keepends=True)
        except OSError:
            return []

    def close(self) -> None:
        """Stop the trials still running and the reports' queue."""
        for trial_id, status in list(self._status.items()):
            if status == Status.in_progress:
                self._cancel(trial_id, Status.stopped)
        self._queue.shutdown(force=True)

    def __str__(self) -> str:
        return f"Ray backend ({self.resources.cpus_per_trial:g} CPUs, {self.resources.gpus_per_trial:g} GPUs per trial)"
