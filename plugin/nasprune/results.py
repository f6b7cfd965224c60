"""Results of a search: one row per evaluated sub-network, one summary, one writer, the output folder.

Every producer of results builds them here, so that ``nasprune compare`` and ``nasprune export``
read one format whoever wrote it: the weight-sharing search (:func:`nasprune.workflows.search`),
the pruning baselines (:mod:`nasprune.baselines.runner`) and standard NAS
(:mod:`nasprune.snas`).

* :func:`result_row`: a row of ``results.csv`` for an evaluated :class:`~nasprune.subnet.SubNetwork`
  (``trial_id``, ``config_<name>``, the measured values, the layout columns and ``subnet``).
* :func:`build_summary`: ``summary.json``'s common fields and its ``pareto_set``.
* :func:`write_results`: ``results.csv``, ``pareto.md``, ``pareto.png`` and, last, ``summary.json``
  (its paths made absolute by :func:`absolute_summary_paths`).
* :func:`pareto_table`, :func:`pareto_markdown`: the Pareto set as tables show it, in ``--pick``
  order, with the recommended point and its export line (:mod:`nasprune.choosing`).
* :func:`check_search_output_dir`, :func:`begin_search_outputs`: which run a folder's results belong
  to, and marking its summary incomplete while new results are on their way.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune import analysis, choosing
from nasprune.errors import NaspruneError
from nasprune.files import write_csv_atomic, write_json_atomic, write_text_atomic
from nasprune.subnet import SubNetwork

logger = logging.getLogger("nasprune")

#: Validation errors measured so far: an interrupted search resumes from here.
JOURNAL_FILE = "evaluations.jsonl"
#: What a search writes into its output folder (``--overwrite-output-dir`` removes them all).
SEARCH_OUTPUT_FILES = ("summary.json", "results.csv", "pareto.md", "pareto.png", "report.html", JOURNAL_FILE)
#: The settings that make a search folder's results another run's: compared on every (re)start.
RUN_SETTINGS = ("checkpoint", "method", "search_space", "objectives", "seed")
#: Spaces with more variables (the large space's 37k bits) keep their config in ``subnet`` only.
MAX_CONFIG_COLUMNS = 64
#: The measured values a ``pareto_set`` entry records, in order, with their JSON types; a column
#: the table lacks (latency, when it is no objective) is left out.
PARETO_COLUMNS: dict[str, type] = {
    "valid_error": float,
    "test_error": float,
    "params": int,
    "relative_params": float,
    "macs": int,
    "relative_macs": float,
    "latency_seconds": float,
    "relative_latency": float,
}


@dataclass
class SearchResult:
    """The evaluated sub-networks (one row each) and the run's summary."""

    table: pd.DataFrame
    summary: dict[str, Any]
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pareto(self) -> pd.DataFrame:
        """The rows on the Pareto front."""
        return self.table[self.table["pareto"]]


# --- rows -------------------------------------------------------------------------------------
def layout_columns(subnet: SubNetwork) -> dict[str, Any]:
    """The layout of ``subnet`` as result columns: ``num_layers`` (layers that still compute
    something), ``heads_per_layer`` and ``units_per_layer`` (JSON lists) and ``subnet`` (JSON)."""
    return {
        "num_layers": len(subnet.kept_layers),
        "heads_per_layer": json.dumps(subnet.heads_per_layer.tolist()),
        "units_per_layer": json.dumps(subnet.units_per_layer.tolist()),
        "subnet": json.dumps(subnet.to_dict()),
    }


def result_row(
    trial_id: int,
    subnet: SubNetwork,
    measured: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of ``results.csv``: an evaluated sub-network.

    Columns, in order: ``trial_id``; ``config_<name>`` for each variable of ``config`` when it has at
    most :data:`MAX_CONFIG_COLUMNS`; ``measured`` (metrics, times, the producer's own columns);
    :func:`layout_columns`; and ``extra`` (columns a baseline adds after the layout).
    """
    row: dict[str, Any] = {"trial_id": trial_id}
    if config is not None and len(config) <= MAX_CONFIG_COLUMNS:
        row.update({f"config_{name}": value for name, value in config.items()})
    row.update(measured)
    row.update(layout_columns(subnet))
    row.update(extra or {})
    return row


# --- the summary ------------------------------------------------------------------------------
def pareto_rows(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The rows marked ``pareto``, by their second objective (size), as tables and summaries show them."""
    return table[table["pareto"]].sort_values(metrics[1])


def pareto_entry(row: Mapping[str, Any], int_columns: Sequence[str] = ()) -> dict[str, Any]:
    """A ``pareto_set`` entry of a result row: ``trial_id``, the :data:`PARETO_COLUMNS` it has,
    ``int_columns`` (e.g. standard NAS's ``best_epoch``, ``epochs``) and the ``subnet`` itself."""
    entry: dict[str, Any] = {"trial_id": int(row["trial_id"])}
    entry.update({name: kind(row[name]) for name, kind in PARETO_COLUMNS.items() if name in row})
    entry.update({name: int(row[name]) for name in int_columns})
    entry["subnet"] = json.loads(row["subnet"])
    return entry


def build_summary(
    table: pd.DataFrame,
    metrics: Sequence[str],
    *,
    source: Mapping[str, Any],
    method: str,
    search_space: str,
    seed: int,
    run: Mapping[str, Any],
    full_model: Mapping[str, Any] | None,
    details: Mapping[str, Any] | None = None,
    pareto_int_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """A run's ``summary.json`` (without ``complete``, which :func:`write_results` adds last).

    :param table: The result rows (:func:`result_row`) with a boolean ``pareto`` column.
    :param metrics: The objective columns, all minimised; the first is the error.
    :param source: What the results were measured on, first in the summary: ``task`` and ``model``
        and, for a checkpoint, ``checkpoint``, ``checkpoint_fingerprint`` and ``data_options``
        (:meth:`nasprune.session.CheckpointSession.summary_source`).
    :param run: The producer's fields after ``num_evaluated`` (``search_seconds`` and the like).
    :param full_model: The unpruned model's measurements.
    :param details: Fields after ``full_model`` (a baseline's settings).
    :param pareto_int_columns: Integer columns each ``pareto_set`` entry adds (see :func:`pareto_entry`).
    """
    reference = analysis.reference_point(len(metrics))
    return {
        **source,
        "method": method,
        "search_space": search_space,
        "seed": seed,
        "objectives": list(metrics),
        "num_evaluated": len(table),
        **run,
        "hypervolume": analysis.hypervolume(table[list(metrics)].to_numpy(dtype=float), reference),
        "reference_point": reference,
        "hypervolume_definition": analysis.HYPERVOLUME_DEFINITION,
        "full_model": full_model,
        **(details or {}),
        "pareto_set": [
            pareto_entry(row, pareto_int_columns) for row in pareto_rows(table, metrics).to_dict("records")
        ],
    }


# --- writing ----------------------------------------------------------------------------------
def write_results(
    table: pd.DataFrame,
    summary: dict,
    metrics: list[str],
    output_dir: Path,
    write_more: Callable[[dict[str, Path]], None] | None = None,
) -> SearchResult:
    """Write a search's (or baseline's) results: ``results.csv``, ``pareto.md``, ``pareto.png``,
    whatever ``write_more(files)`` adds to ``files``, and ``summary.json`` last, with
    ``"complete": true``. Until then the old summary (if any) says ``"complete": false``, so a
    reader never takes a partial set for a whole one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table": output_dir / "results.csv",
        "pareto_table": output_dir / "pareto.md",
        "summary": output_dir / "summary.json",
        "plot": output_dir / "pareto.png",
    }
    _mark_incomplete(files["summary"])
    absolute_summary_paths(summary)
    write_csv_atomic(table, files["table"])
    write_text_atomic(pareto_markdown(table, summary, output_dir), files["pareto_table"])
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    # Multi-fidelity search: lower-fidelity rows measure other (smaller) data, so only full-fidelity ones are drawn.
    shown_rows = table[table["fidelity"] == 1.0] if "fidelity" in table.columns else table
    analysis.plot_front(shown_rows, x=metrics[1], y=metrics[0], path=files["plot"], title=title, summary=summary)
    if write_more is not None:
        write_more(files)
    summary.setdefault("hypervolume_definition", analysis.HYPERVOLUME_DEFINITION)
    summary["complete"] = True
    write_json_atomic(summary, files["summary"])
    return SearchResult(table, summary, output_dir, files)


# --- the Pareto table -------------------------------------------------------------------------
#: A language model without layers still predicts: each next token from the current token's embedding.
LM_EMPTY_MODEL_NOTE = "no layers: the next token from the current token's embedding alone"


def lm_vocab_size(summary: Mapping[str, Any]) -> int | None:
    """The vocabulary size a language-modelling summary records (its error is relative to ln of it); None otherwise."""
    vocab_size = summary.get("vocab_size")
    return int(vocab_size) if isinstance(vocab_size, (int, float)) and vocab_size > 1 else None


def lm_loss_and_perplexity(error: Any, vocab_size: int) -> tuple[Any, Any]:
    """The mean next-token loss (nats) and the perplexity of LM errors (numbers or arrays).

    The LM task's error is the loss divided by ``ln vocab_size`` (:mod:`nasprune.data.lm`), so the
    loss is ``error · ln V`` and the perplexity ``exp(loss) = V ** error``.
    """
    loss = np.asarray(error, dtype=float) * math.log(vocab_size)
    perplexity = np.exp(loss)
    if np.ndim(loss) == 0:
        return float(loss), float(perplexity)
    return loss, perplexity


def pareto_table(table: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """The Pareto set as ``pareto.md`` and the search commands show it, in ``--pick`` order.

    ``pick`` is the number ``nasprune export --pick`` takes; the task's metric stands beside each
    error (``valid_accuracy`` = 1 - ``valid_error``, named after the metric); then the sizes, MACs,
    layers, heads and units per layer, and a ``note`` for the empty model.
    """
    front = choosing.pareto_front(table)
    metric = choosing.metric_name(summary)
    shown = pd.DataFrame({"pick": range(len(front)), "trial_id": front["trial_id"].astype(int)})
    vocab_size = lm_vocab_size(summary)
    for split in ("valid", "test"):
        if f"{split}_error" in front.columns:
            errors = front[f"{split}_error"].astype(float)
            shown[f"{split}_{metric}"] = 1.0 - errors
            shown[f"{split}_error"] = errors
            if vocab_size is not None:
                losses, perplexities = lm_loss_and_perplexity(errors.to_numpy(), vocab_size)
                shown[f"{split}_loss"], shown[f"{split}_perplexity"] = losses, perplexities
    for column in ("params", "relative_params", "macs", "relative_macs", "relative_latency", "num_layers",
                   "heads_per_layer", "units_per_layer"):
        if column in front.columns:
            shown[column] = front[column]
    empty_note = LM_EMPTY_MODEL_NOTE if vocab_size is not None else choosing.EMPTY_MODEL_NOTE
    shown["note"] = np.where(choosing.is_empty_model(front).to_numpy(), empty_note, "")
    return shown


def pareto_markdown(table: pd.DataFrame, summary: Mapping[str, Any], output_dir: Path) -> str:
    """``pareto.md``: the full model, the :func:`pareto_table` and the recommended point with the
    ``nasprune export`` line that cuts it out."""
    metric = choosing.metric_name(summary)
    lines = []
    full = summary.get("full_model")
    vocab_size = lm_vocab_size(summary)

    def score(error: Any) -> str:
        text = f"{1 - float(error):.4f}"
        if vocab_size is None:
            return text
        loss, perplexity = lm_loss_and_perplexity(float(error), vocab_size)
        return f"{text} (loss {loss:.4f}, perplexity {perplexity:.2f})"

    if isinstance(full, Mapping) and full.get("valid_error") is not None:
        lines.append(
            f"Full model: validation {metric} {score(full['valid_error'])}"
            + (f", test {metric} {score(full['test_error'])}" if full.get("test_error") is not None else "")
            + (f", {int(full['params']):,} parameters" if full.get("params") is not None else "")
            + ".\n"
        )
    if vocab_size is not None:
        lines.append(
            f"Language modelling: error = mean next-token loss / ln {vocab_size} (the vocabulary), so "
            f"{metric} = 1 - error, loss = error · ln {vocab_size} and perplexity = exp(loss).\n"
        )
    lines.append(f"Pareto set, smallest first; `pick` is what `nasprune export --pick` takes ({metric} = 1 - error):\n")
    lines.append(analysis.markdown_table(pareto_table(table, summary)))
    lines.append(recommendation_text(table, summary, output_dir))
    return "\n".join(lines)


def recommendation_text(table: pd.DataFrame, summary: Mapping[str, Any], output_dir: Path) -> str:
    """The recommended point, how it was chosen, and the command that exports it (Markdown)."""
    metric = choosing.metric_name(summary)
    full_error = choosing.full_model_valid_error(summary)
    if full_error is None:
        return "No full-model measurement is recorded, so no point is recommended: choose one by `--pick`.\n"
    chosen = choosing.recommendation(table, summary, output_dir)
    if chosen is None:
        return (
            f"No Pareto point is within {choosing.RECOMMENDATION_TOLERANCE * 100:.0f} point of the full model's "
            f"validation {metric} ({1 - full_error:.4f}); choose one by `--pick`.\n"
        )
    row = chosen["row"]
    text = (
        f"Recommended: pick {chosen['pick']} (trial {chosen['trial_id']}), {chosen['rule']} "
        f"({1 - float(row['valid_error']):.4f} against {1 - full_error:.4f}), with "
        f"{chosen['shares']}.\n"
    )
    if chosen["command"] is None:
        return text + (
            "\nIts weights are not in the checkpoint (see `nasprune export`'s message), so it cannot be exported.\n"
        )
    return text + f"\n```\n{chosen['command']}\n```\n"


def absolute_summary_paths(summary: dict[str, Any]) -> dict[str, Any]:
    """Make the paths a ``summary.json`` records absolute (in place), so that they do not depend
    on the folder a command was started from: the checkpoint, the data files, Syne Tune's folder,
    a recovered front's source results and any listed ``files``."""

    def absolute(value: Any) -> Any:
        return str(Path(value).resolve()) if isinstance(value, (str, Path)) and str(value) else value

    if "checkpoint" in summary:
        summary["checkpoint"] = absolute(summary["checkpoint"])
    for name, holder_key in (("train_file", "data_options"), ("validation_file", "data_options"),
                             ("test_file", "data_options"), ("path", "syne_tune"),
                             ("source_results", "recovery")):
        holder = summary.get(holder_key)
        if isinstance(holder, dict) and holder.get(name):
            holder[name] = absolute(holder[name])
    if isinstance(summary.get("files"), dict):
        summary["files"] = {name: absolute(path) for name, path in summary["files"].items()}
    return summary


# --- the output folder ------------------------------------------------------------------------
def check_search_output_dir(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to search with ``settings`` (some of :data:`RUN_SETTINGS`) into a folder whose results
    (``summary.json``, or the journal's header when there is no summary yet) record other settings,
    with one message naming each difference, unless ``overwrite``. Nothing is changed on disk."""
    if overwrite:
        return
    output_dir = Path(output_dir)
    recorded = recorded_run_settings(output_dir)
    differing = [
        f"{name}: {recorded[name]} there, {value} now"
        for name, value in settings.items()
        if name in recorded and _comparable(name, recorded[name]) != _comparable(name, value)
    ]
    if differing:
        raise NaspruneError(
            f"{output_dir} holds the results of another run ({'; '.join(differing)}); pass "
            "--overwrite-output-dir to replace them, or choose another --output-dir"
        )


def begin_search_outputs(output_dir: Path, overwrite: bool) -> None:
    """Called once the inputs are known to be good, before a search changes anything in
    ``output_dir``: with ``overwrite`` the files of an earlier search are removed, otherwise the old
    summary is marked incomplete until the new results are all written."""
    output_dir = Path(output_dir)
    if not overwrite:
        _mark_incomplete(output_dir / "summary.json")
        return
    removed = [name for name in SEARCH_OUTPUT_FILES if (output_dir / name).is_file()]
    for name in removed:
        (output_dir / name).unlink()
    if removed:
        logger.info("--overwrite-output-dir: removed %s from %s", ", ".join(removed), output_dir)


def recorded_run_settings(output_dir: Path) -> dict[str, Any]:
    """The :data:`RUN_SETTINGS` that the results in ``output_dir`` were made with ({} if none)."""
    summary_path, journal = output_dir / "summary.json", output_dir / JOURNAL_FILE
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as err:
            raise NaspruneError(
                f"cannot tell which run wrote {summary_path} ({err}); pass --overwrite-output-dir to "
                "replace it, or choose another --output-dir"
            ) from None
        if not isinstance(summary, dict):
            raise NaspruneError(f"{summary_path} is not a results summary; pass --overwrite-output-dir to replace it")
        return {name: summary[name] for name in RUN_SETTINGS if name in summary}
    if journal.is_file():  # a search interrupted before its first summary: its header names the checkpoint
        with journal.open() as lines:
            try:
                header = json.loads(lines.readline())
            except ValueError:
                return {}
        return {"checkpoint": header["checkpoint"]} if isinstance(header, dict) and "checkpoint" in header else {}
    return {}


def _comparable(name: str, value: Any) -> Any:
    if name == "checkpoint":
        return str(Path(value).resolve())
    if name == "objectives":
        return list(value)
    return value


def _mark_incomplete(summary_path: Path) -> None:
    """Rewrite a complete ``summary.json`` with ``"complete": false`` (new results are on their
    way), so that no reader takes it as the description of files about to change."""
    try:
        summary = json.loads(summary_path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        summary_path.unlink()  # unreadable: it describes nothing
        return
    if isinstance(summary, dict) and summary.get("complete") is not False:
        write_json_atomic({**summary, "complete": False}, summary_path)
