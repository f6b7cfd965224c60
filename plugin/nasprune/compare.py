"""``nasprune compare``: hypervolumes, ranks, curves and tables over any set of runs.

A *run* is a folder with ``results.csv`` and ``summary.json``, as written by ``nasprune search``,
``run``, standard NAS and ``nasprune baseline``. Runs are grouped into *methods* (by default the
kind of run and its method: ``ws/nsga2``, ``snas/moasha``, ``baseline/rfp``) and compared per task.

Hypervolume normalisation (fixed, the same for every method)
------------------------------------------------------------
The objectives are the validation error and a relative size (``relative_params`` or
``relative_macs``), all minimised. Comparing hypervolumes is only meaningful with one
normalisation and one reference point for all runs. Three choices are offered:

- ``unit`` (default): nasprune's one definition (:data:`nasprune.analysis.HYPERVOLUME_DEFINITION`):
  no rescaling, since errors and relative sizes are already fractions (the unpruned model is at
  size 1), and the reference point 1.1 per objective, so the unpruned model counts. It does not
  depend on which runs are compared, and the values equal the ``hypervolume`` in each run's
  ``summary.json``.
- ``task``: per task, each objective is min-max scaled over *all* points of *all* runs of that task
  being compared, with the reference point (1.1, 1.1) in scaled units (a point at the worst value
  still counts). It spreads the values more, but changes when runs are added.
- ``paper``: the normalisation of Klein et al. 2024: per task, each objective is quantile-normalised
  (its empirical distribution over all points of all runs of that task being compared is mapped
  to [0, 1], scikit-learn's ``QuantileTransformer``) and the reference point is (2, 2). It
  changes when runs are added, as in the paper.

Runs whose ``summary.json`` says ``"complete": false`` (interrupted while writing their results)
are left out with a warning.

Ranks
-----
An *instance* is a (task, data seed, seed) triple: the data seed fixes the train/validation/test
split, the seed the training and search. Within an instance the methods present are ranked by final
hypervolume (1 = best, ties share the mean rank). A method's average rank is the mean over the
instances it appears in; its 95% confidence interval comes from a seeded bootstrap over instances.

Time
----
Hypervolume over wall-clock time uses each row's ``elapsed_seconds``. The cost of the checkpoint a
run started from (super-network training or fine-tuning, read from the checkpoint's
``nasprune.json`` history) is added as an offset unless ``include_training_time`` is off, so that
weight-sharing searches, baselines and standard NAS are charged for everything they needed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.files import save_figure_atomic, write_csv_atomic, write_json_atomic, write_text_atomic
from nasprune.objectives import COMMON_OBJECTIVES, OBJECTIVES

logger = logging.getLogger("nasprune")

NORMALISATIONS = ("unit", "task", "paper")
#: The reference point of the ``task`` (min-max) and ``paper`` (quantile) normalisations.
TASK_REFERENCE_POINT, PAPER_REFERENCE_POINT = 1.1, 2.0
GROUP_FIELDS = ("kind", "method", "search_space", "strategy", "order")
#: What makes one ranking instance: the same task on the same split, trained and searched with one seed.
INSTANCE_KEYS = ("task", "data_seed", "seed")
#: Fractions of the unpruned model's score drawn as horizontal lines on the error-vs-size curves.
SCORE_LEVELS = (1.0, 0.95, 0.9)
RESULTS_FILE, SUMMARY_FILE = "results.csv", "summary.json"


# --- loading ------------------------------------------------------------------------------
@dataclass
class Run:
    """One run's results table and summary."""

    path: Path
    summary: dict[str, Any]
    table: pd.DataFrame
    label: str = ""

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or "custom")

    @property
    def method(self) -> str:
        return str(self.summary.get("method", "?"))

    @property
    def seed(self) -> int:
        return int(self.summary.get("seed", 0) or 0)

    @property
    def data_seed(self) -> int:
        """The seed of the data split: runs on different splits are different instances."""
        data_options = self.summary.get("data_options") or {}
        return int(data_options.get("seed", self.summary.get("data_seed", 0)) or 0)

    @property
    def kind(self) -> str:
        """``baseline``, ``snas`` (standard NAS, one Syne Tune trial per candidate) or ``ws``."""
        if "baseline" in self.summary:
            return "baseline"
        if "syne_tune" in self.summary or "n_workers" in self.summary:
            return "snas"
        return "ws"

    @property
    def search_space(self) -> str:
        return str(self.summary.get("search_space", "?"))

    @property
    def checkpoint_info(self) -> dict[str, Any]:
        checkpoint = self.summary.get("checkpoint")
        if not checkpoint:
            return {}
        try:
            return json.loads((Path(checkpoint) / "nasprune.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def strategy(self) -> str:
        return str(self.checkpoint_info.get("strategy", "-"))

    @property
    def order(self) -> str:
        """``rewired`` when the super-network started from heads and units that
        :mod:`nasprune.rewiring` sorted by importance (``train-supernet --rewire``), else ``natural``."""
        return "rewired" if self.checkpoint_info.get("rewiring") else "natural"

    @property
    def training_seconds(self) -> float:
        """Wall-clock seconds of the checkpoint's training epochs (0 when unknown)."""
        history = self.checkpoint_info.get("history") or []
        return float(sum(float(epoch.get("seconds", 0.0)) for epoch in history))

    def group(self, fields: Sequence[str]) -> str:
        if self.summary.get("label"):
            return str(self.summary["label"])
        return "/".join(str(getattr(self, f)) for f in fields)


def load_run(path: str | os.PathLike) -> Run:
    """Read one run folder; :class:`NaspruneError` when a file is missing or unreadable."""
    path = Path(path)
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text())
        table = pd.read_csv(path / RESULTS_FILE)
    except FileNotFoundError as err:
        raise NaspruneError(f"{path} is not a results folder: {err.filename} is missing") from None
    except (ValueError, pd.errors.ParserError) as err:
        raise NaspruneError(f"cannot read the results in {path}: {err}") from None
    return Run(path, summary, table)


def find_runs(paths: Iterable[str | os.PathLike]) -> list[Run]:
    """Every run folder at or below the given paths (sorted, each once)."""
    found: dict[Path, None] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise NaspruneError(f"{root} does not exist")
        candidates = [root] if (root / SUMMARY_FILE).is_file() else []
        candidates += sorted(p.parent for p in root.rglob(SUMMARY_FILE) if p.parent != root)
        for folder in candidates:
            if (folder / RESULTS_FILE).is_file():
                found[folder.resolve()] = None
    if not found:
        raise NaspruneError("no results found: expected folders with results.csv and summary.json")
    complete = []
    for run in map(load_run, found):
        # Results written before completeness was recorded have no "complete": they were whole.
        if run.summary.get("complete", True) is False:
            logger.warning("skipping %s: its results are incomplete (interrupted while writing them)", run.path)
        else:
            complete.append(run)
    if not complete:
        raise NaspruneError("no complete results found: every results folder was interrupted while writing")
    return complete


# --- hypervolume --------------------------------------------------------------------------
@dataclass(frozen=True)
class Normalisation:
    """Fixed bounds (``unit``, ``task``) or quantile maps (``paper``) per task and objective, and
    the reference point in normalised units."""

    kind: str
    objectives: tuple[str, ...]
    bounds: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    reference_point: tuple[float, ...] = ()
    #: ``paper``: per task, a QuantileTransformer fitted on all compared points of that task
    quantiles: dict[str, Any] = field(default_factory=dict)

    def for_task(self, task: str) -> tuple[list[float], list[float]]:
        return self.bounds.get(task, ([0.0] * len(self.objectives), [1.0] * len(self.objectives)))

    def transform(self, task: str, points: np.ndarray) -> np.ndarray:
        """``points`` (``[n, objectives]``) in normalised units; non-finite values become NaN."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.objectives))
        if self.kind != "paper":
            return analysis.normalise(points, self.for_task(task))
        finite = np.where(np.isfinite(points), points, np.nan)  # the transformer keeps NaN as NaN
        return self.quantiles[task].transform(finite) if len(points) else finite

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "objectives": list(self.objectives),
            "reference_point": list(self.reference_point),
            "bounds": {t: {"lower": lo, "upper": up} for t, (lo, up) in self.bounds.items()},
            "quantile_points": {t: int(q.n_quantiles_) for t, q in self.quantiles.items()},
        }


def make_normalisation(
    runs: Sequence[Run], objectives: Sequence[str], kind: str = "unit", reference_point: float | None = None
) -> Normalisation:
    """The fixed normalisation of the module docstring, from all runs being compared."""
    if kind not in NORMALISATIONS:
        raise NaspruneError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMALISATIONS)}")
    objectives = tuple(objectives)
    default_reference = {
        "unit": analysis.REFERENCE_POINT, "task": TASK_REFERENCE_POINT, "paper": PAPER_REFERENCE_POINT,
    }[kind]
    ref = (default_reference if reference_point is None else reference_point,) * len(objectives)
    if kind == "unit":
        return Normalisation(kind, objectives, {}, ref)
    bounds, quantiles = {}, {}
    for task in sorted({r.task for r in runs}):
        points = np.vstack([_points(r, objectives) for r in runs if r.task == task])
        points = points[np.all(np.isfinite(points), axis=1)]
        if not len(points):
            raise NaspruneError(f"no run of task {task} has a finite {' and '.join(objectives)}: nothing to normalise")
        if kind == "paper":
            from sklearn.preprocessing import QuantileTransformer

            quantiles[task] = QuantileTransformer(n_quantiles=min(1000, len(points))).fit(points)
            continue
        lower, upper = points.min(axis=0), points.max(axis=0)
        upper = np.where(upper > lower, upper, lower + 1.0)  # a constant objective: any width works
        bounds[task] = (lower.tolist(), upper.tolist())
    return Normalisation(kind, objectives, bounds, ref, quantiles)


def _points(run: Run, objectives: Sequence[str]) -> np.ndarray:
    missing = [c for c in objectives if c not in run.table.columns]
    if missing:
        raise NaspruneError(f"{run.path}/results.csv lacks the column(s) {', '.join(missing)}")
    return run.table[list(objectives)].to_numpy(dtype=float)


def run_hypervolume(run: Run, norm: Normalisation) -> float:
    """The final hypervolume of a run under the fixed normalisation."""
    return analysis.hypervolume(norm.transform(run.task, _points(run, norm.objectives)), norm.reference_point)


def run_trace(run: Run, norm: Normalisation, include_training_time: bool = True) -> pd.DataFrame:
    """Hypervolume over wall-clock seconds (``seconds``, ``hypervolume``) of one run."""
    table = run.table
    if "elapsed_seconds" not in table.columns:
        table = table.assign(elapsed_seconds=np.arange(1, len(table) + 1, dtype=float))
    normalised = table.assign(**dict(zip(norm.objectives, norm.transform(run.task, _points(run, norm.objectives)).T)))
    trace = analysis.hypervolume_over_time(normalised, norm.objectives, "elapsed_seconds", norm.reference_point)
    offset = run.training_seconds if include_training_time else 0.0
    return pd.DataFrame({"seconds": trace["elapsed_seconds"] + offset, "hypervolume": trace["hypervolume"]})


def mean_trace(traces: Sequence[pd.DataFrame], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over runs of step-function traces on a common time grid
    (before a run's first result its hypervolume is 0)."""
    values = []
    for trace in traces:
        times, volumes = trace["seconds"].to_numpy(float), trace["hypervolume"].to_numpy(float)
        index = np.searchsorted(times, grid, side="right") - 1
        values.append(np.where(index >= 0, volumes[np.clip(index, 0, None)], 0.0))
    stacked = np.vstack(values)
    return stacked.mean(axis=0), stacked.std(axis=0)


# --- ranks --------------------------------------------------------------------------------
def instance_ranks(scores: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Ranks of the methods within every instance.

    :param scores: columns ``task``, ``data_seed`` (optional, 0 when absent), ``seed``, ``method``,
        ``score`` (one row per run)
    :return: the same rows with a ``rank`` column (1 = best; ties share their mean rank)
    """
    from scipy.stats import rankdata

    def rank(group: pd.DataFrame) -> pd.Series:
        values = -group["score"].to_numpy(float) if higher_is_better else group["score"].to_numpy(float)
        return pd.Series(rankdata(values, method="average"), index=group.index)

    ranked = scores.copy()
    if "data_seed" not in ranked:
        ranked["data_seed"] = 0
    ranked["rank"] = np.nan
    for _, group in ranked.groupby(list(INSTANCE_KEYS), sort=True):
        ranked.loc[group.index, "rank"] = rank(group)
    return ranked


def average_ranks(
    ranked: pd.DataFrame, num_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Mean rank per method with a bootstrap confidence interval over instances.

    Each bootstrap replicate draws as many instances as there are, with replacement,
    and averages every method's ranks over the drawn instances it appears in.
    :return: one row per method (sorted by mean rank): ``method``, ``mean_rank``, ``ci_low``,
        ``ci_high``, ``instances``
    """
    if "data_seed" not in ranked:
        ranked = ranked.assign(data_seed=0)
    keys = [ranked[k] for k in INSTANCE_KEYS]
    instances = sorted(set(zip(*keys)))
    methods = sorted(ranked["method"].unique())
    matrix = np.full((len(instances), len(methods)), np.nan)
    position = {inst: i for i, inst in enumerate(instances)}
    column = {m: j for j, m in enumerate(methods)}
    for instance, method, rank in zip(zip(*keys), ranked["method"], ranked["rank"]):
        matrix[position[instance], column[method]] = rank
    mean = np.nanmean(matrix, axis=0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(instances), size=(num_bootstrap, len(instances)))
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        boot = np.vstack([np.nanmean(matrix[d], axis=0) for d in draws]) if num_bootstrap else mean[None, :]
    alpha = (1 - confidence) / 2
    low = np.nanquantile(boot, alpha, axis=0)
    high = np.nanquantile(boot, 1 - alpha, axis=0)
    table = pd.DataFrame(
        {
            "method": methods,
            "mean_rank": mean,
            "ci_low": low,
            "ci_high": high,
            "instances": (~np.isnan(matrix)).sum(axis=0),
        }
    )
    return table.sort_values(["mean_rank", "method"], kind="stable").reset_index(drop=True)


class _quiet_nanmean:
    """Silence numpy's 'mean of empty slice' for a method absent from every drawn instance."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


# --- compression at fixed quality -----------------------------------------------------------
def unpruned_error(runs: Sequence[Run], column: str = "valid_error") -> float:
    """The unpruned model's error on a task: the median over the runs' ``full_model`` entries."""
    values = [
        float(r.summary["full_model"][column])
        for r in runs
        if isinstance(r.summary.get("full_model"), dict) and r.summary["full_model"].get(column) is not None
    ]
    return float(np.median(values)) if values else math.nan


def smallest_at_level(run: Run, size: str, max_error: float, error: str = "valid_error") -> float:
    """The smallest relative size among a run's rows with ``error <= max_error`` (NaN if none)."""
    table = run.table
    if error not in table.columns:
        return math.nan
    fitting = table[table[error].to_numpy(float) <= max_error + 1e-12]
    return float(fitting[size].min()) if len(fitting) else math.nan


# --- tables -------------------------------------------------------------------------------
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


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


# --- plots --------------------------------------------------------------------------------
def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    return save_figure_atomic(figure, path)


def _colours(labels: Sequence[str]) -> dict[str, Any]:
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    from matplotlib import colormaps

    # Beyond ten methods the default cycle repeats; tab20 keeps up to twenty apart.
    palette = colormaps["tab20"].colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def plot_hypervolume_over_time(
    traces: dict[str, list[pd.DataFrame]], path: Path, title: str
) -> Path:
    """Mean hypervolume over wall-clock time per method, with a ±1 std band over seeds."""
    figure = _figure()
    axes = figure.add_subplot()
    colours = _colours(sorted(traces))
    times = np.concatenate([t["seconds"].to_numpy(float) for ts in traces.values() for t in ts])
    times = times[times > 0]
    if times.size:
        grid = np.geomspace(times.min(), times.max(), 200) if times.max() > times.min() else times[:1]
        for label in sorted(traces):
            mean, std = mean_trace(traces[label], grid)
            axes.step(grid, mean, where="post", color=colours[label], label=f"{label} (n={len(traces[label])})")
            # A hypervolume is never negative; the band says so too.
            axes.fill_between(grid, np.maximum(mean - std, 0.0), mean + std, step="post", color=colours[label], alpha=0.15)
        axes.set_xscale("log")
    axes.set_xlabel("wall-clock seconds (checkpoint training included)")
    axes.set_ylabel("hypervolume")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    return _save(figure, path)


def plot_error_vs_size(
    runs: Sequence[Run], size: str, error: str, unpruned: float, path: Path, title: str
) -> Path:
    """Every run's Pareto front (error against size; one colour per method, one line per seed)
    with horizontal lines at 100/95/90% of the unpruned model's score (``1 - error``)."""
    figure = _figure()
    axes = figure.add_subplot()
    labels = sorted({r.label for r in runs})
    colours = _colours(labels)
    shown: set[str] = set()
    for run in runs:
        if error not in run.table.columns or size not in run.table.columns:
            continue
        points = run.table[[size, error]].to_numpy(float)
        points = points[np.all(np.isfinite(points), axis=1)]
        if not len(points):
            continue
        front = points[analysis.pareto_mask(points)]
        front = front[np.argsort(front[:, 0], kind="stable")]
        label = None if run.label in shown else run.label
        shown.add(run.label)
        axes.step(front[:, 0], front[:, 1], where="post", color=colours[run.label], alpha=0.8, linewidth=1.0)
        axes.scatter(front[:, 0], front[:, 1], s=12, color=colours[run.label], label=label)
    if math.isfinite(unpruned):
        for level in SCORE_LEVELS:
            line = 1.0 - level * (1.0 - unpruned)
            axes.axhline(line, color="0.3", linestyle=":" if level < 1 else "--", linewidth=0.9)
            # Labels at the right end, where the fronts reach the unpruned model, stay readable.
            axes.annotate(f"{level:.0%} of unpruned", (axes.get_xlim()[1], line), fontsize=7, ha="right",
                          xytext=(-2, 2), textcoords="offset points", color="0.3")
    axes.set_xlabel(size)
    axes.set_ylabel(error)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    return _save(figure, path)


def _legend_outside(axes) -> None:
    # Many methods x seeds: a legend inside the axes would cover the fronts.
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_ranks(ranks: pd.DataFrame, path: Path, title: str) -> Path:
    """Average ranks with their bootstrap confidence intervals (lower is better)."""
    figure = _figure(6.5, 0.4 * len(ranks) + 1.5)
    axes = figure.add_subplot()
    y = np.arange(len(ranks))
    mean = ranks["mean_rank"].to_numpy(float)
    err = np.vstack([mean - ranks["ci_low"].to_numpy(float), ranks["ci_high"].to_numpy(float) - mean])
    axes.errorbar(mean, y, xerr=np.clip(err, 0, None), fmt="o", color="C0", capsize=3)
    axes.set_yticks(y, ranks["method"].tolist(), fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("average rank (1 = best), 95% bootstrap CI")
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    return _save(figure, path)


# --- the comparison -----------------------------------------------------------------------
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

    scores = per_run.groupby(run_keys, as_index=False)["hypervolume"].mean()
    ranked = instance_ranks(scores.rename(columns={"hypervolume": "score"}))
    ranks = average_ranks(ranked, num_bootstrap)
    hv_table = _hypervolume_table(per_run, ranks)
    compression = _compression_table(runs, columns[1])
    for name, table, caption in (
        ("hypervolume", hv_table, "Hypervolume (mean ± std over seeds) and average rank"),
        ("ranks", ranks, "Average rank by hypervolume, 95% bootstrap CI"),
        ("compression", compression, f"Smallest {columns[1]} within a share of the unpruned score"),
    ):
        files[f"{name}_csv"] = write_csv_atomic(table, output_dir / f"{name}.csv")
        files[f"{name}_md"] = write_text_atomic(analysis.markdown_table(table), output_dir / f"{name}.md")
        files[f"{name}_tex"] = write_text_atomic(latex_table(table, caption), output_dir / f"{name}.tex")

    for task in sorted({r.task for r in runs}):
        task_runs = [r for r in runs if r.task == task]
        traces: dict[str, list[pd.DataFrame]] = {}
        for run in task_runs:
            traces.setdefault(run.label, []).append(run_trace(run, norm, include_training_time))
        slug = _slug(task)
        files[f"hypervolume_over_time_{slug}"] = plot_hypervolume_over_time(
            traces, output_dir / f"hypervolume_over_time_{slug}.png", f"{task}: hypervolume over time"
        )
        for error in ("valid_error", "test_error"):
            prefix = "" if error == "valid_error" else "test_"
            files[f"{prefix}error_vs_size_{slug}"] = plot_error_vs_size(
                task_runs, columns[1], error, unpruned_error(task_runs, error),
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


def _hypervolume_table(per_run: pd.DataFrame, ranks: pd.DataFrame) -> pd.DataFrame:
    """One row per method: ``mean ± std`` hypervolume per task, seeds, and the average rank."""
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


def _compression_table(runs: Sequence[Run], size: str) -> pd.DataFrame:
    """Per task and method: the smallest size (mean over seeds) within 100/95/90% of the unpruned
    score, on the validation error the searches optimise."""
    rows = []
    for task in sorted({r.task for r in runs}):
        task_runs = [r for r in runs if r.task == task]
        unpruned = unpruned_error(task_runs)
        for label in sorted({r.label for r in task_runs}):
            row: dict[str, Any] = {"task": task, "method": label}
            for level in SCORE_LEVELS:
                limit = 1.0 - level * (1.0 - unpruned)
                values = [smallest_at_level(r, size, limit) for r in task_runs if r.label == label]
                finite = [v for v in values if math.isfinite(v)]
                row[f"{size} @{level:.0%}"] = float(np.mean(finite)) if finite else math.nan
                row[f"runs @{level:.0%}"] = f"{len(finite)}/{len(values)}"
            rows.append(row)
    return pd.DataFrame(rows)
