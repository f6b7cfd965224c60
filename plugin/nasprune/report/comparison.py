"""The ``nasprune compare`` job: load runs, score them under one normalisation, rank them, and
write the tables and plots."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.files import write_csv_atomic, write_json_atomic, write_text_atomic
from nasprune.objectives import COMMON_OBJECTIVES, OBJECTIVES
from nasprune.report.hypervolume import run_hypervolume, run_trace
from nasprune.report.normalisation import Normalisation, make_normalisation
from nasprune.report.plots import plot_error_vs_size, plot_hypervolume_over_time, plot_ranks
from nasprune.report.quality import ERRORS, unpruned_error
from nasprune.report.ranks import average_ranks, instance_ranks
from nasprune.report.runs import GROUP_FIELDS, find_runs
from nasprune.report.tables import compression_table, hypervolume_table, latex_table

logger = logging.getLogger("nasprune")


@dataclass
class Comparison:
    """What :func:`compare` computed, and the files it wrote."""

    runs: pd.DataFrame
    hypervolume: pd.DataFrame
    ranks: pd.DataFrame
    compression: pd.DataFrame
    normalisation: Normalisation
    files: dict[str, Path] = field(default_factory=dict)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def compare(
    paths: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    objectives: Sequence[str] = ("error", "params"),
    normalisation: str = "unit",
    reference_point: float | None = None,
    group_by: Sequence[str] = ("kind", "method"),
    num_bootstrap: int = 1000,
    include_training_time: bool = True,
) -> Comparison:
    """Compare all runs found under ``paths``; write tables and plots to ``output_dir``.

    Files: ``runs.csv`` (one row per run), ``hypervolume.{csv,md,tex}`` (mean ± std over seeds per
    task, average rank), ``ranks.{csv,md,tex}``, ``compression.{csv,md,tex}`` (smallest relative
    size within 100/95/90% of the unpruned score), ``comparison.json`` (settings), and per task
    ``hypervolume_over_time_<task>.png``, ``error_vs_size_<task>.png`` (validation error) and
    ``test_error_vs_size_<task>.png``, plus ``ranks.png``.
    """
    unknown = [o for o in objectives if o not in COMMON_OBJECTIVES]
    if unknown or len(objectives) < 2 or objectives[0] != "error":
        raise NaspruneError(f"--objectives must be 'error' and one or more of params, macs; got {','.join(objectives)}")
    bad_fields = [f for f in group_by if f not in GROUP_FIELDS]
    if bad_fields or not group_by:
        raise NaspruneError(f"--group-by takes fields from {', '.join(GROUP_FIELDS)}; got {','.join(group_by)}")
    columns = [OBJECTIVES[o] for o in objectives]
    runs = find_runs(paths)
    for run in runs:
        run.label = run.group(group_by)
    norm = make_normalisation(runs, columns, normalisation, reference_point)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    rows = []
    for run in runs:
        rows.append(
            {
                "task": run.task,
                "method": run.label,
                "data_seed": run.data_seed,
                "seed": run.seed,
                "hypervolume": run_hypervolume(run, norm),
                "num_evaluated": len(run.table),
                "seconds": float(run.table["elapsed_seconds"].max()) if "elapsed_seconds" in run.table else math.nan,
                "training_seconds": run.training_seconds,
                "seconds_before_search": run.seconds_before_search,
                "path": str(run.path),
            }
        )
    run_keys = ["task", "method", "data_seed", "seed"]
    per_run = pd.DataFrame(rows).sort_values(run_keys, kind="stable").reset_index(drop=True)
    duplicates = per_run.duplicated(run_keys, keep=False)
    if duplicates.any():
        logger.warning(
            "%d runs share a (task, method, data seed, seed); ranks use their mean hypervolume: %s",
            int(duplicates.sum()), ", ".join(per_run.loc[duplicates, "path"].head(4)),
        )
    files["runs"] = write_csv_atomic(per_run, output_dir / "runs.csv")

    tasks = sorted({r.task for r in runs})
    runs_of = {task: [r for r in runs if r.task == task] for task in tasks}
    # The unpruned model's errors per task, once: the compression table and the plots share them.
    unpruned = {task: {error: unpruned_error(runs_of[task], error) for error in ERRORS} for task in tasks}

    scores = per_run.groupby(run_keys, as_index=False)["hypervolume"].mean()
    ranked = instance_ranks(scores.rename(columns={"hypervolume": "score"}))
    ranks = average_ranks(ranked, num_bootstrap)
    hv_table = hypervolume_table(per_run, ranks)
    compression = compression_table(runs, columns[1], {task: unpruned[task]["valid_error"] for task in tasks})
    for name, table, caption in (
        ("hypervolume", hv_table, "Hypervolume (mean ± std over seeds) and average rank"),
        ("ranks", ranks, "Average rank by hypervolume, 95% bootstrap CI"),
        ("compression", compression, f"Smallest {columns[1]} within a share of the unpruned score"),
    ):
        files[f"{name}_csv"] = write_csv_atomic(table, output_dir / f"{name}.csv")
        files[f"{name}_md"] = write_text_atomic(analysis.markdown_table(table), output_dir / f"{name}.md")
        files[f"{name}_tex"] = write_text_atomic(latex_table(table, caption), output_dir / f"{name}.tex")

    for task in tasks:
        traces: dict[str, list[pd.DataFrame]] = {}
        for run in runs_of[task]:
            traces.setdefault(run.label, []).append(run_trace(run, norm, include_training_time))
        slug = _slug(task)
        files[f"hypervolume_over_time_{slug}"] = plot_hypervolume_over_time(
            traces, output_dir / f"hypervolume_over_time_{slug}.png", f"{task}: hypervolume over time"
        )
        for error in ERRORS:
            prefix = "" if error == "valid_error" else "test_"
            files[f"{prefix}error_vs_size_{slug}"] = plot_error_vs_size(
                runs_of[task], columns[1], error, unpruned[task][error],
                output_dir / f"{prefix}error_vs_size_{slug}.png", f"{task}: {error} vs {columns[1]}",
            )
    files["ranks_plot"] = plot_ranks(ranks, output_dir / "ranks.png", "average rank over tasks and seeds")
    settings = {
        "normalisation": norm.to_dict(),
        "group_by": list(group_by),
        "num_bootstrap": num_bootstrap,
        "include_training_time": include_training_time,
        "runs": [str(r.path) for r in runs],
        "files": {k: str(v) for k, v in files.items()},
    }
    files["settings"] = write_json_atomic(settings, output_dir / "comparison.json")
    return Comparison(per_run, hv_table, ranks, compression, norm, files)
