"""Wall-clock latency of models and sub-networks on random inputs.

Latency is measured, not modelled: the model runs ``warmup`` untimed forwards, then ``repeats``
timed ones on one fixed batch of random token ids without padding (every position is real, the
worst case of a length bucket). Results are robust statistics over the repeats (the median first),
because a single slow repeat (a page fault, another process) should not move the number.

A sub-network's latency is that of its physically pruned model (:func:`subnet_latency`), since
that is what a user deploys; a masked super-network would compute the pruned parts anyway.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from nasprune.accelerator import describe_device, synchronize
from nasprune.errors import NaspruneError
from nasprune.inputs import model_device, random_inputs
from nasprune.subnet import SubNetwork


def measure_latency(
    model: nn.Module,
    batch_size: int = 1,
    seq_len: int = 128,
    device: torch.device | str | None = None,
    warmup: int = 5,
    repeats: int = 20,
    num_choices: int = 4,
    compile: bool = False,
) -> dict[str, Any]:
    """Time forward passes of ``model`` (a HF task model, pruned model or super-network).

    :param model: moved to ``device`` when one is given (in place, like ``model.to``), else
        timed where it is; run in eval mode under ``torch.inference_mode`` and put back in the
        training mode it had
    :param batch_size: sequences per forward (questions, for multiple choice)
    :param seq_len: tokens per sequence; must fit the model's position embeddings
    :param warmup: untimed forwards first (allocator, kernel selection, caches)
    :param repeats: timed forwards; the statistics are over these
    :param num_choices: choices per question of a multiple-choice model
    :param compile: time ``torch.compile(model)`` (compiled during the warm-up, which must then be
        at least 1): for a model of fixed shape deployed as such, not for one timed once
    :returns: ``median_s``, ``mean_s``, ``min_s``, ``p90_s``, ``std_s`` (seconds per forward),
        ``sequences_per_s`` (throughput at the median) and the settings it ran with
    """
    if batch_size < 1 or seq_len < 1 or repeats < 1 or warmup < 0:
        raise NaspruneError(
            f"latency needs batch_size, seq_len and repeats >= 1 and warmup >= 0; got "
            f"batch_size={batch_size}, seq_len={seq_len}, repeats={repeats}, warmup={warmup}"
        )
    if device is not None:
        model.to(device)
    device = model_device(model)
    if compile and warmup < 1:
        raise NaspruneError("a compiled model needs warmup >= 1: the first forward compiles it")
    inputs = random_inputs(model, batch_size, seq_len, num_choices, device)
    forward = torch.compile(model) if compile else model

    def sync() -> None:
        # CUDA kernels run asynchronously: without this the clock would stop at launch.
        synchronize(device)

    was_training = model.training
    model.eval()
    times = np.empty(repeats)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                forward(**inputs)
            sync()
            for i in range(repeats):
                start = time.perf_counter()
                forward(**inputs)
                sync()
                times[i] = time.perf_counter() - start
    finally:
        model.train(was_training)
    median = float(np.median(times))
    return {
        "median_s": median,
        "mean_s": float(times.mean()),
        "min_s": float(times.min()),
        "p90_s": float(np.percentile(times, 90)),
        "std_s": float(times.std()),
        "sequences_per_s": batch_size / median,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "repeats": repeats,
        **describe_device(device),
        "compiled": compile,
        "threads": torch.get_num_threads(),
    }


def subnet_latency(
    supernet: nn.Module,
    subnet: SubNetwork,
    batch_size: int = 1,
    seq_len: int = 128,
    device: torch.device | str | None = None,
    warmup: int = 5,
    repeats: int = 20,
    num_choices: int = 4,
) -> dict[str, Any]:
    """Latency of ``subnet`` once physically pruned out of ``supernet`` (see :func:`measure_latency`).

    ``supernet`` is a :class:`~nasprune.supernet.SuperNetwork` or the HF model it wraps; it is not
    modified. The pruned copy lives on ``device`` (default: the super-network's) only while timed.
    The result also holds ``params``, the pruned model's parameter count.
    """
    from nasprune.export import slice_subnetwork  # export imports the pruned models: load lazily

    pruned = slice_subnetwork(supernet, subnet)
    result = measure_latency(pruned, batch_size, seq_len, device, warmup, repeats, num_choices)
    result["params"] = sum(p.numel() for p in pruned.parameters())
    return result
