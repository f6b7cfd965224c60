"""The result tables of standard NAS: one row per trial at its best epoch (``results.csv`` and
``summary.json``, in the weight-sharing search's format), every started trial (``trials.csv``)
and the hypervolume over wall-clock time (``hypervolume_over_time.csv`` and ``.png``).

Rows are built with :func:`nasprune.results.result_row` and written with
:func:`nasprune.results.write_results`, as every producer of results does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from syne_tune.constants import ST_TUNER_TIME

from nasprune import analysis
from nasprune.files import save_figure_atomic, write_csv_atomic, write_json_atomic
from nasprune.results import SearchResult, build_summary, layout_columns, result_row, write_results
from nasprune.snas.journal import JOURNAL_FILE, TRIAL_STATUSES, TrialJournal
from nasprune.snas import storage
from nasprune.snas.protocol import LATENCY_REPORTED, REPORTED
from nasprune.spaces import SearchSpace

#: The table of every started trial (see :func:`write_trials_table`).
TRIALS_TABLE = "trials.csv"


@dataclass
class StandardNASResult(SearchResult):
    """A search result, in the weight-sharing search's format, plus Syne Tune's side."""

    hypervolume_over_time: pd.DataFrame | None = None
    #: Syne Tune's results: one row per reported epoch.
    syne_tune_results: pd.DataFrame | None = None
    tuner: Any = None


def best_epoch_table(results: pd.DataFrame, space: SearchSpace, statuses: dict[int, str]) -> pd.DataFrame:
    """One row per trial that reported at least one epoch, at its best validation epoch.

    :param results: Every report (:meth:`TrialJournal.results`): one row per epoch, with
        ``trial_id``, ``config_<name>`` columns and ``st_tuner_time``.
    :param space: The search space the configs belong to.
    :param statuses: The final status of each trial (:data:`TRIAL_STATUSES`).
    :return: Columns ``trial_id``, ``config_<variable>`` (spaces of at most 64 variables), the
        reported metrics of the best epoch (lowest ``valid_error``, the earliest among ties;
        the size does not change between epochs), ``best_epoch``, ``epochs`` (run),
        ``status``, ``trial_seconds`` (the trial's working time up to the best epoch),
        ``elapsed_seconds`` (the tuner's wall-clock time when the best epoch was reported),
        the sub-network's layout and ``subnet`` (JSON).
    """
    ordered = results.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    best = ordered.loc[ordered.groupby("trial_id")["valid_error"].idxmin()].reset_index(drop=True)
    epochs_run = ordered.groupby("trial_id")["epoch"].max()
    rows = []
    for record in best.to_dict("records"):
        trial_id = int(record["trial_id"])
        config = {name: int(record[f"config_{name}"]) for name in space.variable_names}
        measured = {name: record[name] for name in REPORTED + LATENCY_REPORTED if name in record}
        measured["best_epoch"] = int(record["epoch"])
        measured["epochs"] = int(epochs_run[trial_id])
        measured["status"] = statuses.get(trial_id, "interrupted")
        measured["trial_seconds"] = record["elapsed_seconds"]
        measured["elapsed_seconds"] = record[ST_TUNER_TIME]
        rows.append(result_row(trial_id, space.to_subnet(config), measured, config=config))
    return pd.DataFrame(rows)


def hypervolume_trace(
    results: pd.DataFrame, metrics: Sequence[str], reference_point: Sequence[float]
) -> pd.DataFrame:
    """Hypervolume of every epoch reported so far, after each report, over the tuner's time.

    Every reported epoch is a fine-tuned sub-network one could keep, so the curve counts them
    all; its last value is the hypervolume of the best-epoch table.
    """
    ordered = results.sort_values(ST_TUNER_TIME, kind="stable").reset_index(drop=True)
    trace = analysis.hypervolume_over_time(ordered, metrics, ST_TUNER_TIME, reference_point)
    return pd.DataFrame(
        {
            "wallclock_seconds": trace[ST_TUNER_TIME],
            "trial_id": ordered["trial_id"].astype(int),
            "epoch": ordered["epoch"].astype(int),
            "hypervolume": trace["hypervolume"],
        }
    )


def plot_hypervolume(trace: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """A PNG of the hypervolume over wall-clock time (a step line), written atomically."""
    # matplotlib is heavy: loaded only when a plot is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    minutes = trace["wallclock_seconds"].to_numpy(dtype=float) / 60
    axes.step(minutes, trace["hypervolume"], where="post", color="C0")
    axes.scatter(minutes, trace["hypervolume"], s=8, color="C0")
    axes.set_xlabel("wall-clock time (minutes)")
    axes.set_ylabel("hypervolume")
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure_atomic(figure, path)


def write_trials_table(journal: TrialJournal, space: SearchSpace, output_dir: Path) -> pd.DataFrame:
    """``trials.csv``: one row per started trial, reported or not, with its status and error.

    Columns: ``trial_id``, ``status``, ``epochs`` (run), ``valid_error`` and ``relative_params`` of
    its best epoch (NaN without one), ``error`` (the last line of a failed trial's error output),
    ``restarts``, ``log``, ``config_<variable>`` (spaces of at most 64 variables) and ``subnet``;
    on Ray also ``nodes``: the node of each attempt, ``;``-separated (a trial retried after its node
    was lost ran on more than one).
    """
    on_ray = any(record.nodes for record in journal.trials.values())
    rows = []
    for first, chain in journal.experiment_trials().items():
        results = journal.chain_results(chain)
        best = min(results, key=lambda r: r["valid_error"]) if results else {}
        config = {name: chain[0].config[name] for name in space.variable_names}
        measured: dict[str, Any] = {"status": journal.final_status(chain)}
        measured["epochs"] = max((int(r["epoch"]) for r in results), default=0)
        measured["valid_error"] = best.get("valid_error", float("nan"))
        measured["relative_params"] = best.get("relative_params", float("nan"))
        measured["error"] = next((r.error for r in reversed(chain) if r.error), "")
        measured["restarts"] = len(chain) - 1
        measured["log"] = storage.join(chain[-1].path, "std.err") if chain[-1].path else ""
        if on_ray:
            measured["nodes"] = ";".join(node for record in chain for node in record.nodes)
        row = result_row(first, space.to_subnet(config), measured, config=config)
        # trials.csv keeps its own order (the status first) and, of the layout, only ``subnet``.
        config_columns = [name for name in row if name.startswith("config_")]
        rows.append({name: row[name] for name in ["trial_id", *measured, *config_columns, "subnet"]})
    table = pd.DataFrame(rows, columns=None if rows else ["trial_id", "status", "epochs", "error"])
    write_csv_atomic(table, output_dir / TRIALS_TABLE)
    return table


def standard_nas_summary(
    table: pd.DataFrame, trials: pd.DataFrame, space: SearchSpace, metrics: list[str], *,
    model: str, task: str, method: str, seed: int, **fields: Any,
) -> dict[str, Any]:
    """``summary.json`` of a standard-NAS run (:func:`nasprune.results.build_summary`): ``fields``
    (the run's settings and times), the trial counts by status, the failed trials with their
    errors, the full model's trial and, in each ``pareto_set`` entry, ``best_epoch`` and ``epochs``.

    :param table: :func:`best_epoch_table` with its ``pareto`` column.
    :param trials: :func:`write_trials_table`.
    """
    columns = [c for c in REPORTED + LATENCY_REPORTED if c in table.columns]
    counts = trials["status"].value_counts()
    failed = trials[trials["status"] == "failed"]
    run = {
        **fields,
        "trial_counts": {"started": len(trials), **{status: int(counts.get(status, 0)) for status in TRIAL_STATUSES}},
        "failed_trials": [
            {"trial_id": int(row.trial_id), "error": row.error or None, "log": row.log or None}
            for row in failed.itertuples()
        ],
    }
    return build_summary(
        table, metrics, source={"task": task, "model": model}, method=method, search_space=space.name, seed=seed,
        run=run, full_model=_full_model(table, trials, space, columns), pareto_int_columns=("best_epoch", "epochs"),
    )


def _full_model(table: pd.DataFrame, trials: pd.DataFrame, space: SearchSpace, columns: list[str]) -> dict[str, Any]:
    """The unpruned model's trial (the initial design's largest network): its best epoch when it
    reported one, otherwise its status and why there is no result."""
    full = layout_columns(space.to_subnet(space.largest()))["subnet"]
    reported = table[table["subnet"] == full]
    if len(reported):
        row = reported.iloc[0]
        return {"trial_id": int(row["trial_id"]), "status": row["status"], **{c: row[c] for c in columns}}
    started = trials[trials["subnet"] == full]
    if not len(started):
        return {"trial_id": None, "status": "not started",
                "reason": "the budget ended before the full model's trial started"}
    row = started.iloc[0]
    return {
        "trial_id": int(row["trial_id"]), "status": row["status"],
        "reason": f"the full model's trial reported no epoch ({row['status']}"
        + (f": {row['error']}" if row["error"] else "") + ")",
    }


def write_standard_nas_outputs(
    table: pd.DataFrame, summary: dict, metrics: list[str], trace: pd.DataFrame,
    output_dir: Path, results: pd.DataFrame, tuner: Any,
) -> StandardNASResult:
    """Write a standard-NAS run's results: those of :func:`nasprune.results.write_results`, the
    hypervolume over time (table and plot), and ``summary.json`` again with every file listed.

    :param results: Every report (:meth:`TrialJournal.results`), kept in the returned result.
    :param tuner: Syne Tune's ``Tuner`` of this run (None when the budget was spent before it).
    """
    # results.csv, summary.json, pareto.md and pareto.png exactly as the weight-sharing search.
    written = write_results(table, summary, metrics, output_dir)
    files = dict(written.files)
    files["hypervolume_table"] = write_csv_atomic(trace, output_dir / "hypervolume_over_time.csv")
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    files["hypervolume_plot"] = plot_hypervolume(trace, output_dir / "hypervolume_over_time.png", title)
    files["trials_table"] = output_dir / TRIALS_TABLE
    files["journal"] = output_dir / JOURNAL_FILE
    summary["files"] = {name: str(Path(path).resolve()) for name, path in files.items()}
    write_json_atomic(summary, files["summary"])
    return StandardNASResult(table, summary, output_dir, files, trace, results, tuner)
