"""The objectives a search minimises: their names on the command line, their result columns, and
the one objective that is measured rather than counted (latency).

Every objective is a fraction, so runs compare in one unit: ``error`` is ``1 - metric``, the sizes
and the latency are relative to the unpruned model. This module stays light (no torch at import):
``nasprune compare`` and the Syne Tune schedulers read the table too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from nasprune.errors import NaspruneError
from nasprune.subnet import SubNetwork

if TYPE_CHECKING:
    from nasprune.supernet import SuperNetwork

#: Objective names on the command line -> result columns (all minimised).
OBJECTIVES = {
    "error": "valid_error",
    "params": "relative_params",
    "macs": "relative_macs",
    "latency": "relative_latency",
}
#: Examples per batch when the error is measured (validation and test splits; ``--eval-batch-size``).
#: The answers are the same at any size; on 2 CPU cores 64 to 128 measured about equally fast in a
#: whole run, and a GPU wants more.
EVAL_BATCH_SIZE = 128
#: The objectives every kind of run records (searches, standard NAS, baselines); latency only
#: where a search asks for it, so baselines and ``nasprune compare`` take these.
COMMON_OBJECTIVES = ("error", "params", "macs")


def metric_columns(objectives: Sequence[str]) -> list[str]:
    """The result columns of ``--objectives``: ``error`` first, then one or more others, no repeats.

    :raises NaspruneError: for an unknown, repeated or misplaced objective
    """
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or len(objectives) < 2 or objectives[0] != "error":
        raise NaspruneError(
            f"--objectives must be 'error' followed by one or more of "
            f"{', '.join(k for k in OBJECTIVES if k != 'error')}; got {','.join(objectives)}"
        )
    if len(set(objectives)) != len(objectives):
        raise NaspruneError(f"--objectives names an objective twice: {','.join(objectives)}")
    return [OBJECTIVES[o] for o in objectives]


def check_latency_settings(batch_size: int, seq_length: int | None) -> None:
    """Refuse a ``--latency-batch-size`` below 1 and a ``--latency-seq-length`` below 1."""
    if batch_size < 1:
        raise NaspruneError(f"--latency-batch-size must be at least 1, got {batch_size}")
    if seq_length is not None and seq_length < 1:
        raise NaspruneError(f"--latency-seq-length must be at least 1, got {seq_length}")


class LatencyObjective:
    """Measured latency of the physically pruned sub-network, relative to the unpruned model.

    Each sub-network is sliced out and timed once (warm-up, then the median of repeats) at the
    given batch size and sequence length, on the super-network's device.
    """

    def __init__(self, supernet: "SuperNetwork", batch_size: int, seq_len: int, repeats: int = 10):
        # Imported here, not at the top: timing needs torch and the pruned models, and the
        # objectives table is read where neither is loaded (compare, the schedulers).
        from nasprune.latency import subnet_latency

        self._time = lambda subnet: subnet_latency(
            supernet, subnet, batch_size=batch_size, seq_len=seq_len, warmup=3, repeats=repeats
        )["median_s"]
        full = SubNetwork.full(supernet.shape)
        self._time(full)  # the first timing in a process pays one-off kernel set-up costs
        self.full_seconds = self._time(full)
        self._seconds: dict[SubNetwork, float] = {full: self.full_seconds}

    def __call__(self, subnet: SubNetwork) -> dict[str, float]:
        """``latency_seconds`` and ``relative_latency`` of ``subnet`` (each timed once)."""
        if subnet not in self._seconds:
            self._seconds[subnet] = self._time(subnet)
        seconds = self._seconds[subnet]
        return {"latency_seconds": seconds, "relative_latency": seconds / self.full_seconds}
