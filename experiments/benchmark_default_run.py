"""The default run before and after, stage by stage, side by side in one session.

Runs ``nasprune run`` twice on the default task (MiniLM-L6, rotten_tomatoes, the quick preset,
seed 0): once with the settings that were its defaults when issue 13 asked for a faster default run
(``--no-rewire --method random_search --objectives error,params --num-random-subnets 2
--num-samples 60``; its quality is the bar) and once
with today's defaults (no flags), one after the other on the same machine, and prints each stage's
wall-clock seconds and their ratio:

- fine-tuning a copy for the importance (rewiring), with the time of one of its steps;
- super-network training, with the time of one training step;
- the search, with its sub-network evaluations (at every fidelity), the full validation passes
  they add up to, and passes per second;
- the importance, loading and scoring the Pareto set on the test split (the rest of the run);

and the quality of both fronts: the largest network's test accuracy, the best Pareto point's test
accuracy at <= 50% and <= 40% of the MACs, and the hypervolume in the error/params and error/MACs
planes over every sub-network evaluated on the whole validation split (reference point 1.1, as
everywhere in nasprune; multi-fidelity search's subset measurements are left out, as in its own
summary). Every number is read from the files the two runs wrote.

Usage (about 9 minutes on 2 idle CPU cores)::

    python experiments/benchmark_default_run.py --work-dir runs/benchmark_default_run

``--before`` takes other flags for the first run, e.g. the previous defaults (rewired, the copy for
the importance fine-tuned on all 6,000 training snippets, local search):
``--before="--rewire-finetune-examples 6000 --num-random-subnets 2 --num-samples 60 --method local_search"``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.export import pareto_front

#: The defaults of ``nasprune run`` when issue 13 was filed, spelled out.
BEFORE = "--no-rewire --method random_search --objectives error,params --num-random-subnets 2 --num-samples 60"
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


def full_fidelity(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows measured on the whole validation split (all of them without multi-fidelity search)."""
    return rows[rows["fidelity"] == 1.0] if "fidelity" in rows.columns else rows


def stages(output_dir: Path, wall: float) -> dict[str, float]:
    summary = json.loads((output_dir / "summary.json").read_text())
    rows = pd.read_csv(output_dir / "results.csv")
    finetune, finetune_steps = epoch_seconds(output_dir / "supernet" / "rewiring-finetune")
    train, steps = epoch_seconds(output_dir / "supernet")
    search = float(summary["search_seconds"])
    passes = float(rows["fidelity"].sum()) if "fidelity" in rows.columns else float(len(rows))
    return {
        "fine-tuning for the importance (s)": finetune,
        "one fine-tuning step (s)": finetune / finetune_steps if finetune_steps else np.nan,
        "super-network training (s)": train,
        "one training step (s)": train / max(steps, 1),
        "search (s)": search,
        "sub-network evaluations (all fidelities)": len(rows),
        "full validation passes": passes,
        "full validation passes per second": passes / search,
        "importance, loading, test split, rest (s)": wall - finetune - train - search,
        "total (s)": wall,
    }


def quality(output_dir: Path) -> dict[str, float]:
    summary = json.loads((output_dir / "summary.json").read_text())
    rows = full_fidelity(pd.read_csv(output_dir / "results.csv"))
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
    parser.add_argument("--before", default=BEFORE, help=f"flags of the first run (default: {BEFORE!r})")
    args = parser.parse_args()
    measured = {}
    for name, flags in (("before", shlex.split(args.before)), ("after", [])):
        folder = args.work_dir / name
        wall = run(flags, folder)
        measured[name] = {**stages(folder, wall), **quality(folder)}
    table = pd.DataFrame(measured)
    table["after / before"] = table["after"] / table["before"]
    print(analysis.markdown_table(table.reset_index(names="stage"), float_format="{:.3g}"))


if __name__ == "__main__":
    main()
