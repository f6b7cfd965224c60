"""The comparison's tables (hypervolume, compression) and a LaTeX writer; Markdown comes from
:func:`nasprune.analysis.markdown_table`."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune.report.quality import SCORE_LEVELS, error_at_level, smallest_at_level
from nasprune.report.runs import Run


def hypervolume_table(per_run: pd.DataFrame, ranks: pd.DataFrame) -> pd.DataFrame:
    """One row per method: ``mean ± std`` hypervolume per task, seeds, and the average rank.

    :param per_run: one row per run: ``task``, ``method``, ``hypervolume``
    :param ranks: :func:`nasprune.report.ranks.average_ranks`; its order is the table's
    """
    tasks = sorted(per_run["task"].unique())
    table = pd.DataFrame({"method": ranks["method"]})
    for task in tasks:
        part = per_run[per_run["task"] == task]
        stats = part.groupby("method")["hypervolume"].apply(_mean_std)
        table[f"hypervolume {task}" if len(tasks) > 1 else "hypervolume"] = table["method"].map(stats).fillna("")
    table["runs"] = table["method"].map(per_run.groupby("method").size()).fillna(0).astype(int)
    table["mean_rank"] = ranks["mean_rank"].to_numpy()
    table["rank_95ci"] = [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(ranks["ci_low"], ranks["ci_high"])]
    return table


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def compression_table(runs: Sequence[Run], size: str, unpruned: Mapping[str, float]) -> pd.DataFrame:
    """Per task and method: the smallest size (mean over seeds) within 100/95/90% of the unpruned
    score, on the validation error the searches optimise.

    :param unpruned: per task, the unpruned model's validation error
        (:func:`nasprune.report.quality.unpruned_error`)
    """
    rows = []
    for task in sorted({r.task for r in runs}):
        task_runs = [r for r in runs if r.task == task]
        for label in sorted({r.label for r in task_runs}):
            row: dict[str, Any] = {"task": task, "method": label}
            for level in SCORE_LEVELS:
                limit = error_at_level(unpruned[task], level)
                values = [smallest_at_level(r, size, limit) for r in task_runs if r.label == label]
                finite = [v for v in values if math.isfinite(v)]
                row[f"{size} @{level:.0%}"] = float(np.mean(finite)) if finite else math.nan
                row[f"runs @{level:.0%}"] = f"{len(finite)}/{len(values)}"
            rows.append(row)
    return pd.DataFrame(rows)


def latex_table(df: pd.DataFrame, caption: str | None = None, float_format: str = "{:.4f}") -> str:
    """A LaTeX tabular of ``df``: pandas' ``to_latex`` (needs jinja2), else a small writer of our own."""
    frame = df.copy()
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else float_format.format(v))
    try:
        text = frame.to_latex(index=False, escape=True, caption=caption)
    except ImportError:
        text = _latex_fallback(frame, caption)
    return text


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _latex_escape(value: Any) -> str:
    # Character by character, so the braces that escapes introduce are never escaped again.
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(value))


def _latex_fallback(frame: pd.DataFrame, caption: str | None) -> str:
    lines = [r"\begin{table}", r"\centering"] if caption else []
    lines.append(r"\begin{tabular}{" + "l" * len(frame.columns) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(_latex_escape(c) for c in frame.columns) + r" \\")
    lines.append(r"\midrule")
    for row in frame.itertuples(index=False, name=None):
        lines.append(" & ".join(_latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines += [r"\caption{" + _latex_escape(caption) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"
