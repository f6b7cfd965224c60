"""Weight-sharing search on K Ray actors: each holds the super-network and measures sub-networks.

``nasprune search --workers K`` (and ``run``) starts K actors of :class:`SubnetWorker` through Ray
(a local Ray instance, or the cluster ``--ray-address`` names). Each actor opens the checkpoint
itself, on its own device: one GPU per actor when the cluster has GPUs, else ``threads`` CPU
threads. The driver keeps everything that must be in one place: the scheduler and its ask/tell loop
(:func:`nasprune.search.parallel.run_ask_tell_parallel`), the evaluation journal, the parameter and
MAC counts and the result files. Ray's :class:`~ray.util.ActorPool` hands the work out; a crashed
actor is restarted by Ray and its call retried once.

Ray is an optional dependency (``pip install 'nasprune[ray]'``) and only imported here, when more
than one worker is asked for.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Hashable, Sequence

import torch
from tqdm.auto import tqdm

from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.spaces import SearchSpace
from nasprune.subnet import SubNetwork

logger = logging.getLogger(__name__)

RAY_MISSING = "--workers above 1 runs on Ray, which is not installed: pip install 'nasprune[ray]'"


def import_ray() -> Any:
    """The ``ray`` module; a :class:`NaspruneError` naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise NaspruneError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to measure sub-networks exactly as the driver would."""

    checkpoint: str
    data_overrides: dict[str, Any]
    eval_batch_size: int
    macs_seq_length: int
    #: Lengths the super-network must support (the data's, and the latency objective's).
    max_seq_lengths: tuple[int, ...]
    #: ``(batch_size, seq_length)`` of the latency objective, or None without it.
    latency: tuple[int, int] | None = None
    threads: int = 1
    #: The forward passes' precision (:func:`nasprune.accelerator.default_precision` of the driver).
    precision: str = "fp32"


class SubnetWorker:
    """One Ray actor: the checkpoint's super-network on the actor's device, with its validation and
    test splits. Errors are measured exactly as :func:`nasprune.workflows.search` does in one process."""

    def __init__(self, settings: WorkerSettings):
        # Imported here: the module is imported by the driver before Ray starts any actor.
        from nasprune.objectives import LatencyObjective
        from nasprune.session import CheckpointSession, default_device

        torch.set_num_threads(settings.threads)
        # Ray makes only the actor's own GPU visible (none for a CPU actor).
        session = CheckpointSession(settings.checkpoint, settings.data_overrides, default_device())
        self._fingerprint = session.info.fingerprint
        supernet = session.load_supernet(*settings.max_seq_lengths)
        loaders = session.eval_loaders(settings.eval_batch_size)
        metric = session.task_data.metric
        self._num_validation = len(session.encoded["validation"])
        self._validation = SubnetEvaluator(
            supernet, loaders["validation"], metric, settings.macs_seq_length, precision=settings.precision
        )
        self._test = SubnetEvaluator(
            supernet, loaders["test"], metric, settings.macs_seq_length, cache_embeddings=False,
            precision=settings.precision,
        )
        self._latency = None if settings.latency is None else LatencyObjective(supernet, *settings.latency)
        self._device = str(next(supernet.parameters()).device)

    def describe(self) -> dict[str, Any]:
        """What the driver checks before trusting this worker's errors, and where it runs."""
        import ray

        return {
            "fingerprint": self._fingerprint,
            "validation_examples": self._num_validation,
            "device": self._device,
            "node": ray.get_runtime_context().get_node_id(),
        }

    def measure(self, key: Hashable, subnet: SubNetwork, with_error: bool) -> tuple[Hashable, dict[str, float]]:
        """``valid_error`` (when asked) and the latency objective's columns (when on) of ``subnet``."""
        measured: dict[str, float] = {}
        if with_error:
            measured["valid_error"] = self._validation.error(subnet)
        if self._latency is not None:
            measured.update(self._latency(subnet))
        return key, measured

    def test_error(self, subnet: SubNetwork) -> float:
        return self._test.error(subnet)


class RayWorkers:
    """K :class:`SubnetWorker` actors behind a Ray ``ActorPool``.

    :param settings: What every worker opens.
    :param num_workers: K.
    :param address: A Ray cluster (``auto`` or ``HOST:PORT``); None starts Ray on this machine (or
        joins the cluster in ``RAY_ADDRESS``). A Ray already started in this process is used as it is.
    :param threads_per_worker: CPU threads (and Ray CPUs) per worker; None: one with GPUs, else this
        machine's cores split between the workers.
    """

    def __init__(self, settings: WorkerSettings, num_workers: int, address: str | None = None,
                 threads_per_worker: int | None = None):
        ray = import_ray()
        from ray.util import ActorPool

        if num_workers < 1:
            raise NaspruneError(f"--workers must be at least 1, got {num_workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise NaspruneError(f"--threads-per-worker must be at least 1, got {threads_per_worker}")
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            if address is None and not os.environ.get("RAY_ADDRESS"):
                wanted = num_workers * (threads_per_worker or 1)
                # "local": a new instance, never a cluster someone else started here with `ray start`.
                # Ray's CPUs are a bookkeeping unit: never fewer than the workers need, or they would wait forever.
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, wanted), include_dashboard=False,
                         logging_level=logging.WARNING)
            else:
                try:
                    ray.init(address=address, logging_level=logging.WARNING)
                except ConnectionError as err:
                    raise NaspruneError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        threads = threads_per_worker or (1 if gpus else max(1, (os.cpu_count() or 1) // num_workers))
        if gpus and gpus < num_workers:
            self.close()
            raise NaspruneError(
                f"--workers {num_workers} gives every worker a GPU, and the Ray cluster has {gpus}: "
                f"pass --workers {gpus} or fewer"
            )
        cpus = float(resources.get("CPU", 0))
        if cpus < num_workers * threads:
            self.close()
            raise NaspruneError(
                f"--workers {num_workers} with {threads} thread(s) each needs {num_workers * threads} CPUs, "
                f"and the Ray cluster has {cpus:g}: pass fewer workers or --threads-per-worker"
            )
        settings = replace(settings, threads=threads)
        actor_class = ray.remote(SubnetWorker).options(
            num_cpus=threads, num_gpus=1 if gpus else 0, max_restarts=1, max_task_retries=1
        )
        self.actors = [actor_class.remote(settings) for _ in range(num_workers)]
        try:
            #: What each worker reports of itself (fingerprint, split size, device, node).
            self.descriptions: list[dict[str, Any]] = ray.get([a.describe.remote() for a in self.actors])
        except ray.exceptions.RayActorError as err:
            self.close()
            raise NaspruneError(f"a search worker failed to start: {_actor_failure(err)}") from None
        self.pool = ActorPool(self.actors)
        self.threads = threads
        devices = sorted({d["device"] for d in self.descriptions})
        nodes = len({d["node"] for d in self.descriptions})
        logger.info("%d search workers on %d node(s), device(s) %s, %d thread(s) each",
                    num_workers, nodes, ", ".join(devices), threads)

    def check(self, fingerprint: str | None, validation_examples: int) -> None:
        """Refuse workers that opened other weights or another validation split than the driver."""
        for d in self.descriptions:
            if d["fingerprint"] != fingerprint or d["validation_examples"] != validation_examples:
                raise NaspruneError(
                    f"a search worker on node {d['node']} opened the checkpoint with fingerprint "
                    f"{d['fingerprint']} and {d['validation_examples']} validation examples, the driver "
                    f"{fingerprint} and {validation_examples}: every node must see the same checkpoint "
                    "and data files at the same paths"
                )

    def close(self) -> None:
        """Stop the actors, and Ray when it was started here."""
        for actor in getattr(self, "actors", []):
            self._ray.kill(actor)
        self.actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False


def _actor_failure(err: Exception) -> str:
    # Ray's message holds the actor's whole traceback; its last line says what went wrong.
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


class ParallelSearchEvaluation:
    """The :class:`~nasprune.search.parallel.EvaluationPool` of a weight-sharing search on Ray workers.

    The driver's ``validation`` evaluator (with the journal, on any device, without cached
    embeddings) stays the one record of errors: a sub-network it already knows is not sent to a
    worker (unless the latency objective needs timing), each error a worker measures is journalled
    there, and the parameter and MAC counts are computed there.
    """

    def __init__(self, workers: RayWorkers, space: SearchSpace, validation: SubnetEvaluator,
                 with_latency: bool = False):
        self.workers = workers
        self.space = space
        self.validation = validation
        self.with_latency = with_latency
        self._finished: deque[tuple[Hashable, dict[str, float]]] = deque()
        self._submitted: dict[Hashable, SubNetwork] = {}

    @property
    def capacity(self) -> int:
        return len(self.workers.actors)

    def submit(self, key: Hashable, config: dict[str, Any]) -> None:
        self._start(key, self.space.to_subnet(config))

    def next_result(self) -> tuple[Hashable, dict[str, float]]:
        if self._finished:
            return self._finished.popleft()
        key, measured = self._get(self.workers.pool.get_next_unordered)
        return key, self._metrics(self._submitted.pop(key), measured)

    def measure(self, subnet: SubNetwork) -> dict[str, float]:
        """What a search reports of one sub-network (as :meth:`SubnetEvaluator.measure`), measured
        now; only while nothing else is in flight."""
        if self._submitted or self._finished:
            raise RuntimeError("measure() while a search's evaluations are in flight")
        self._start(None, subnet)
        return self.next_result()[1]

    def test_errors(self, subnets: Sequence[SubNetwork], progress: bool = False) -> list[float]:
        """Test errors of ``subnets``, in order, measured on all workers at once."""
        results = self.workers.pool.map(lambda actor, subnet: actor.test_error.remote(subnet), list(subnets))
        return [self._get(lambda: next(results)) for _ in tqdm(
            range(len(subnets)), desc="test split", unit="subnet", disable=not progress, dynamic_ncols=True)]

    def _start(self, key: Hashable, subnet: SubNetwork) -> None:
        with_error = self.validation.known_error(subnet) is None
        if not with_error and not self.with_latency:
            self._finished.append((key, self._metrics(subnet, {})))
            return
        self._submitted[key] = subnet
        self.workers.pool.submit(lambda actor, job: actor.measure.remote(*job), (key, subnet, with_error))

    def _metrics(self, subnet: SubNetwork, measured: dict[str, float]) -> dict[str, float]:
        measured = dict(measured)
        if "valid_error" in measured:
            self.validation.record_error(subnet, measured.pop("valid_error"))
        return {"valid_error": self.validation.known_error(subnet), **self.validation.size(subnet), **measured}

    def _get(self, receive: Any) -> Any:
        try:
            return receive()
        except self.workers._ray.exceptions.RayError as err:
            raise NaspruneError(
                f"a search worker failed: {_actor_failure(err)}; the errors measured so far are in the "
                "journal, and running the same command again resumes"
            ) from None
