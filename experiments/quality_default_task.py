"""Better models than importance pruning? Every path of issue 17 on the default task, side by side.

For each seed (the data split stays fixed: --data-seed 0), on MiniLM-L6 and rotten_tomatoes with the
quick preset's recipe (1 epoch over 6,000 snippets, learning rate 1e-4, length 64):

1. plain fine-tuning of the full model (``nasprune finetune``);
2. weight-sharing NAS with rewiring by that fine-tuned model's importance and local search
   (``nasprune run --rewire-from FT``: today's default path, rewiring by FT's importance with the
   super-network started from FT, local search, error against MACs; a plain ``nasprune run``
   fine-tunes the same copy itself);
3. recovery training (1 epoch, distillation from the super-network) of its best Pareto point at
   <= 50% and <= 40% of the MACs (``nasprune export --finetune-epochs 1``);
4. one-shot first-order importance pruning of the fine-tuned model at 50% and 40% of the MACs,
   each fine-tuned for 1 epoch (``nasprune baseline --method importance``).

Every number is read from the outputs those commands wrote (each measured on its own weights);
the wall-clock seconds of each path are measured here. Writes ``results.csv`` and ``README.md`` to
``--output-dir``::

    python experiments/quality_default_task.py --seeds 0 1 2 --output-dir experiments/results/quality_default_task
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune.analysis import markdown_table
from nasprune.export import pareto_front
from nasprune.files import write_csv_atomic, write_text_atomic

RECIPE = ["--epochs", "1", "--learning-rate", "1e-4", "--max-seq-length", "64", "--max-train-samples", "6000",
          "--max-eval-samples", "1000", "--data-seed", "0"]
BUDGETS = (0.5, 0.4)


def nasprune(*args: str) -> float:
    """Run one ``nasprune`` command; its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nasprune.cli", "--quiet", *map(str, args)], check=True)
    return time.perf_counter() - started


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def best_pick(results: Path, budget: float) -> int:
    """Index (for ``export --pick``) of the most accurate Pareto point within ``budget`` relative MACs."""
    front = pareto_front(pd.read_csv(results / "results.csv"))
    front = front[np.isfinite(front["valid_error"].to_numpy(dtype=float))].reset_index(drop=True)
    within = front[front["relative_macs"] <= budget]
    return int(within["valid_error"].idxmin())


def one_seed(seed: int, root: Path) -> list[dict]:
    rows = []
    ft, ws, imp = root / f"finetune-{seed}", root / f"ws-rewired-{seed}", root / f"importance-{seed}"
    seconds = nasprune("finetune", *RECIPE, "--seed", seed, "--output-dir", ft)
    # A search of one sample evaluates the full model on the validation and test splits.
    seconds_eval = nasprune("search", "--checkpoint", ft, "--num-samples", 1, "--seed", seed,
                            "--output-dir", root / f"finetune-{seed}-eval", "--overwrite-output-dir")
    full = summary(root / f"finetune-{seed}-eval")["full_model"]
    rows.append(dict(seed=seed, path="plain fine-tuning", budget=1.0, relative_macs=1.0,
                     test_accuracy=1 - full["test_error"], seconds=seconds + seconds_eval))

    seconds = nasprune("run", "--rewire-from", ft, "--seed", seed,
                       "--output-dir", ws)
    largest = summary(ws)["full_model"]
    rows.append(dict(seed=seed, path="super-network, largest network", budget=1.0, relative_macs=1.0,
                     test_accuracy=1 - largest["test_error"], seconds=seconds))
    for budget in BUDGETS:
        pick = best_pick(ws, budget)
        out = root / f"ws-rewired-{seed}-recovered-{budget}"
        seconds = nasprune("export", "--checkpoint", ws / "supernet", "--results", ws, "--pick", pick,
                           "--finetune-epochs", 1, "--output-dir", out, "--overwrite-output-dir")
        meta = json.loads((out / "nasprune_export.json").read_text())
        macs = float(meta["searched"]["relative_macs"])
        rows.append(dict(seed=seed, path="weight-sharing NAS, as searched", budget=budget, relative_macs=macs,
                         test_accuracy=1 - meta["recovery"]["test_error_before"], seconds=np.nan))
        rows.append(dict(seed=seed, path="weight-sharing NAS + 1 epoch recovery", budget=budget,
                         relative_macs=macs, test_accuracy=1 - meta["test_error"], seconds=seconds))

    seconds = nasprune("baseline", "--method", "importance", "--checkpoint", ft, "--budgets",
                       ",".join(map(str, BUDGETS)), "--constraint", "macs", "--epochs", 1, "--learning-rate", "1e-4",
                       "--seed", seed, "--output-dir", imp, "--overwrite-output-dir")
    baseline = pd.read_csv(imp / "results.csv")
    for budget in BUDGETS:
        row = baseline[np.isclose(baseline["budget"], budget)].iloc[0]
        rows.append(dict(seed=seed, path="importance pruning + 1 epoch", budget=budget,
                         relative_macs=float(row["relative_macs"]), test_accuracy=1 - float(row["test_error"]),
                         seconds=seconds / len(BUDGETS)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", type=Path, default=Path("experiments/results/quality_default_task"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/quality_default_task"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows += one_seed(seed, args.work_dir)
        per_run = pd.DataFrame(rows)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(per_run, args.output_dir / "results.csv")
    grouped = per_run.groupby(["path", "budget"], sort=False)
    table = grouped.agg(seeds=("seed", "nunique"), relative_macs=("relative_macs", "mean"),
                        test_accuracy=("test_accuracy", "mean"), std=("test_accuracy", "std"),
                        seconds=("seconds", "mean")).reset_index()
    table["test_accuracy"] = [f"{100 * m:.1f}% ± {100 * (s if s == s else 0):.1f}" for m, s in zip(table["test_accuracy"], table["std"])]
    table = table.drop(columns="std")
    text = (f"# Issue 17 on the default task (seeds {', '.join(map(str, args.seeds))}; mean ± std)\n\n"
            + markdown_table(table, float_format="{:.3g}") + "\n")
    write_text_atomic(text, args.output_dir / "README.md")
    print(text)


if __name__ == "__main__":
    main()
