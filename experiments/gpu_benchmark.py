"""GPU benchmark: what mixed precision, slicing and export buy on an accelerator, side by side.

Prints four Markdown tables, each comparison measured in this one run on one device:

(a) super-network training: ``Trainer.train_step`` steps per second with the ``full`` strategy
    (largest + smallest + 2 random sub-networks, in-place distillation) in fp32, fp32 with TF32
    matmuls (CUDA only), bf16 and fp16 autocast, on the same batches; the peak memory of each;
(b) search: sub-network evaluations per second (``SubnetEvaluator``, cached embeddings) with the
    super-network slicing its weights vs masking them, on the same sub-networks; the errors agree;
(c) deployment: latency of the exported model that keeps half of every layer's heads and units
    (about 50% of the MACs) against the full model, eager and (``--compile``) ``torch.compile``d;
(d) the peak GPU memory of the whole run.

The model is a random-init BERT (``--size base``: BERT-base, 110M parameters, the default on a
GPU; ``--size tiny`` the default on the CPU, where this script only checks that it runs) on
random tokens: this measures speed, not accuracy. Usage::

    python experiments/gpu_benchmark.py                  # cuda when available, else a tiny CPU run
    python experiments/gpu_benchmark.py --device cpu --size tiny --train-steps 3
    python experiments/gpu_benchmark.py --compile --json gpu_benchmark.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from nasprune.accelerator import describe_device, resolve_device, synchronize, use_settings
from nasprune.counting import count_macs
from nasprune.evaluation import SubnetEvaluator
from nasprune.export import slice_subnetwork
from nasprune.inputs import random_inputs
from nasprune.latency import measure_latency
from nasprune.spaces import get_search_space
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training import Trainer, TrainingConfig, get_strategy

#: Model sizes: BERT-base, and a tiny one for a CPU smoke run.
SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
}


def random_bert(size: str, seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(num_labels=2, attn_implementation="sdpa", **SIZES[size])
    return BertForSequenceClassification(config).eval()


def random_batches(model, count: int, batch_size: int, seq_len: int, seed: int) -> list[dict]:
    """``count`` batches of random tokens (CPU tensors, as a data loader gives them) with labels;
    the last quarter of each row is padding, so the attention masks matter."""
    batches = []
    for i in range(count):
        batch = random_inputs(model, batch_size, seq_len, seed=seed + i, device="cpu")
        batch["attention_mask"][:, seq_len - seq_len // 4:] = 0
        batch["labels"] = torch.randint(0, 2, (batch_size,), generator=torch.Generator().manual_seed(seed + i))
        batches.append(batch)
    return batches


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_training(base, device, batches, steps: int, variants: list[str]) -> list[dict]:
    """Steps per second of the ``full`` strategy in each precision variant, on fresh copies of ``base``."""
    rows = []
    for variant in variants:
        precision, tf32 = variant.split("+")[0], variant.endswith("+tf32")
        model = copy.deepcopy(base).to(device)
        supernet = SuperNetwork(model)
        space = get_search_space("medium", supernet.shape)
        config = TrainingConfig(epochs=1, learning_rate=1e-5, strategy="full", num_random_subnets=2)
        with use_settings(tf32=tf32):
            trainer = Trainer(supernet, get_strategy("full", space, 2), batches, config,
                              progress=False, precision=precision)
            supernet.train()
            reset_peak(device)
            on_device = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]
            for step in range(2):  # warm-up: allocator, kernel selection
                trainer.train_step(dict(on_device[step % len(on_device)]), step)
            synchronize(device)
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            for step in range(steps):
                total += trainer.train_step(dict(on_device[step % len(on_device)]), step)
            synchronize(device)
            seconds = time.perf_counter() - start
        rows.append({"precision": variant, "steps_per_s": steps / seconds, "mean_loss": float(total) / steps,
                     "peak_memory_mib": peak_memory_mib(device)})
        del trainer, supernet, model, on_device
    return rows


def bench_evaluation(base, device, batches, num_subnets: int, seed: int) -> list[dict]:
    """Sub-network evaluations per second, slicing vs masking, on the same sub-networks."""
    shape = SuperNetwork(base).shape
    space = get_search_space("medium", shape)
    rng = np.random.default_rng(seed)
    subnets = [space.vector_to_subnet(space.sample_vector(rng)) for _ in range(num_subnets)]

    def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
        return float((logits.argmax(-1) == labels).mean())

    rows, errors = [], {}
    for mode, precision in (("mask", "fp32"), ("slice", "fp32"), ("slice", "bf16")):
        supernet = SuperNetwork(copy.deepcopy(base).to(device), mode=mode)
        reset_peak(device)
        evaluator = SubnetEvaluator(supernet, batches, accuracy, remember_errors=False, precision=precision)
        evaluator.error(subnets[0])  # warm-up
        synchronize(device)
        start = time.perf_counter()
        errors[(mode, precision)] = [evaluator.error(s) for s in subnets]  # each copies its logits back
        seconds = time.perf_counter() - start
        rows.append({"mode": mode, "precision": precision, "evaluations_per_s": num_subnets / seconds,
                     "peak_memory_mib": peak_memory_mib(device)})
        del evaluator, supernet
    disagree = max(abs(a - b) for a, b in zip(errors[("mask", "fp32")], errors[("slice", "fp32")]))
    for row in rows:
        row["max_error_difference_vs_mask"] = max(
            abs(a - b) for a, b in zip(errors[("mask", "fp32")], errors[(row["mode"], row["precision"])])
        )
    assert disagree <= 1.0 / (len(batches) * len(batches[0]["labels"])) + 1e-9, "slice and mask disagree"
    return rows


def bench_latency(base, device, batch_size: int, seq_len: int, repeats: int, compile: bool) -> list[dict]:
    """The exported half-width model (about 50% MACs) against the full model, eager and compiled."""
    shape = SuperNetwork(base).shape
    half = SubNetwork.from_counts(shape, [shape.num_heads // 2] * shape.num_layers,
                                  [shape.intermediate_size // 2] * shape.num_layers)
    full_macs = count_macs(SubNetwork.full(shape), shape, seq_len)
    models = {"full": (copy.deepcopy(base), 1.0),
              "exported 50%": (slice_subnetwork(base, half), count_macs(half, shape, seq_len) / full_macs)}
    rows = []
    for compiled in ([False, True] if compile else [False]):
        for name, (model, macs) in models.items():
            result = measure_latency(model, batch_size, seq_len, device, warmup=5 if compiled else 3,
                                     repeats=repeats, compile=compiled)
            rows.append({"model": name, "compiled": compiled, "relative_macs": macs,
                         "median_ms": 1e3 * result["median_s"], "sequences_per_s": result["sequences_per_s"]})
    for row in rows:
        reference = next(r for r in rows if r["model"] == "full" and r["compiled"] == row["compiled"])
        row["speedup_vs_full"] = reference["median_ms"] / row["median_ms"]
    return rows


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--size", choices=tuple(SIZES), help="default: base on a GPU, tiny on the CPU")
    parser.add_argument("--batch-size", type=int, help="training and evaluation batch (default: 32 base, 8 tiny)")
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (default: 128 base, 32 tiny)")
    parser.add_argument("--train-steps", type=int, help="timed training steps per precision (default: 20 base, 3 tiny)")
    parser.add_argument("--eval-batches", type=int, help="validation batches (default: 16 base, 2 tiny)")
    parser.add_argument("--eval-subnets", type=int, help="timed sub-network evaluations per mode (default: 20 base, 3 tiny)")
    parser.add_argument("--latency-batch-size", type=int, default=1)
    parser.add_argument("--latency-repeats", type=int, help="default: 50 base, 5 tiny")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd models (latency)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    size = args.size or ("base" if device.type == "cuda" else "tiny")
    big = size == "base"
    batch_size = args.batch_size or (32 if big else 8)
    seq_len = args.seq_len or (128 if big else 32)
    train_steps = args.train_steps or (20 if big else 3)
    eval_batches = args.eval_batches or (16 if big else 2)
    eval_subnets = args.eval_subnets or (20 if big else 3)
    repeats = args.latency_repeats or (50 if big else 5)

    base = random_bert(size)
    header = describe_device(device) | {"torch": torch.__version__, "size": size, "batch_size": batch_size,
                                        "seq_len": seq_len, "parameters": sum(p.numel() for p in base.parameters())}
    print("# GPU benchmark\n\n" + ", ".join(f"{k}: {v}" for k, v in header.items()) + "\n")
    reset_peak(device)

    variants = ["fp32", *(["fp32+tf32"] if device.type == "cuda" else []), "bf16", "fp16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        variants.remove("bf16")
    training = bench_training(base, device, random_batches(base, 4, batch_size, seq_len, 0), train_steps, variants)
    print(f"## (a) super-network training, strategy full, {train_steps} steps\n\n{markdown(training)}\n")

    evaluation = bench_evaluation(base, device, random_batches(base, eval_batches, batch_size * 2, seq_len, 100),
                                  eval_subnets, seed=0)
    print(f"## (b) sub-network evaluations, {eval_batches} batches of {batch_size * 2}\n\n{markdown(evaluation)}\n")

    latency = bench_latency(base, device, args.latency_batch_size, seq_len, repeats, args.compile)
    print(f"## (c) latency, batch {args.latency_batch_size} x {seq_len} tokens, median of {repeats}\n\n"
          f"{markdown(latency)}\n")

    peaks = [r["peak_memory_mib"] for r in training + evaluation] + [peak_memory_mib(device)]
    peak = None if device.type != "cuda" else max(peaks)
    print(f"## (d) peak GPU memory of the run: {peak:.0f} MiB\n" if peak is not None
          else "## (d) peak GPU memory: not applicable on the CPU\n")
    if args.json:
        args.json.write_text(json.dumps({"setup": header, "training": training, "evaluation": evaluation,
                                         "latency": latency, "peak_memory_mib": peak}, indent=2))


if __name__ == "__main__":
    main()
