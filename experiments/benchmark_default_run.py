"""The default run before and after, stage by stage, side by side in one session.

Runs ``nasprune run`` twice on the default task (MiniLM-L6, rotten_tomatoes, the quick preset,
seed 0): once with the settings that were its defaults before (``--no-rewire --method
random_search --objectives error,params``) and once with today's defaults (no flags), one after the
other on the same machine, and prints each stage's wall-clock seconds and their ratio:

- fine-tuning a copy for the importance (rewiring), and the importance itself;
- super-network training, with the time of one training step;
- the search, with evaluations per second;
- scoring the Pareto set on the test split (the rest of the run);

and the quality of both fronts: the largest network's test accuracy, the best Pareto point's test
accuracy at <= 50% and <= 40% of the MACs, and the hypervolume in the error/params and error/MACs
planes over every evaluated sub-network (reference point 1.1, as everywhere in nasprune). Every
number is read from the files the two runs wrote.

Usage (about 10 minutes on 2 idle CPU cores)::

    python experiments/benchmark_default_run.py --work-dir runs/benchmark_default_run
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.export import pareto_front

#: The defaults of ``nasprune run`` before this change, spelled out.
BEFORE = ["--no-rewire", "--method", "random_search", "--objectives", "error,params"]
BUDGETS = (0.5, 0.4)


def run(flags: list[str], output_dir: Path) -> float:
    """``nasprune run`` with ``flags`` into a fresh ``output_dir``; its wall-clock seconds."""
    shutil.rmtree(output_dir, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nasprune.cli", "--quiet", "run", *flags, "--output-dir", str(output_dir)],
                   check=True)
    return time.perf_counter() - started


def epoch_seconds(folder: Path) -> tuple[float, int]:
    """Training seconds and steps of the last epoch folder under ``folder`` (0 when absent)."""
    epochs = sorted(folder.glob("epoch-*"), key=lambda p: int(p.name.split("-")[1]))
    if not epochs:
        return 0.0, 0
    record = json.loads((epochs[-1] / "nasprune.json").read_text())
    seconds = sum(float(h["seconds"]) for h in record["history"])
    samples = int(record["data_options"].get("max_train_samples") or 0)
    steps = -(-samples // int(record["training"]["batch_size"])) * len(record["history"])
    return seconds, steps


def stages(output_dir: Path, wall: float) -> dict[str, float]:
    summary = json.loads((output_dir / "summary.json").read_text())
    finetune, _ = epoch_seconds(output_dir / "supernet" / "rewiring-finetune")
    train, steps = epoch_seconds(output_dir / "supernet")
    search = float(summary["search_seconds"])
    return {
        "fine-tuning for the importance (s)": finetune,
        "super-network training (s)": train,
        "one training step (s)": train / max(steps, 1),
        "search (s)": search,
        "evaluations per second": summary["num_evaluated"] / search,
        "importance, loading, test split, rest (s)": wall - finetune - train - search,
        "total (s)": wall,
    }


def quality(output_dir: Path) -> dict[str, float]:
    summary = json.loads((output_dir / "summary.json").read_text())
    rows = pd.read_csv(output_dir / "results.csv")
    out = {"largest network, test accuracy": 1 - summary["full_model"]["test_error"]}
    front = pareto_front(rows)
    front = front[np.isfinite(front["test_error"].to_numpy(dtype=float))]
    for budget in BUDGETS:
        within = front[front["relative_macs"] <= budget + 1e-9]
        best = within.loc[within["valid_error"].idxmin()] if len(within) else None
        out[f"best Pareto point <= {budget:.0%} MACs, test accuracy"] = (
            np.nan if best is None else 1 - float(best["test_error"]))
    for size in ("relative_params", "relative_macs"):
        points = rows[["valid_error", size]].to_numpy(dtype=float)
        out[f"hypervolume, error vs {size.split('_')[1]}"] = analysis.hypervolume(points, (analysis.REFERENCE_POINT,) * 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs/benchmark_default_run"))
    args = parser.parse_args()
    measured = {}
    for name, flags in (("before", BEFORE), ("after", [])):
        folder = args.work_dir / name
        wall = run(flags, folder)
        measured[name] = {**stages(folder, wall), **quality(folder)}
    table = pd.DataFrame(measured)
    table["after / before"] = table["after"] / table["before"]
    print(analysis.markdown_table(table.reset_index(names="stage"), float_format="{:.3g}"))


if __name__ == "__main__":
    main()
