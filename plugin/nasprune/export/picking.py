"""Choose what to export from a search's results, and make sure the row's weights are the checkpoint's.

:func:`pick_from_results` chooses the Pareto point to export from a results table.
:class:`SearchResults`, :func:`check_row_has_weights`, :func:`check_results_checkpoint` and
:func:`mask_scales_for_row` make sure a results row is exported from the weights that produced it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from nasprune.choosing import importance_row_fine_tuned, pareto_front
from nasprune.errors import NaspruneError
from nasprune.scales import MASK_SCALES_FILE, MaskScales
from nasprune.subnet import SubNetwork

logger = logging.getLogger("nasprune")

#: The flags that choose the row to export, and what each takes.
PICK_FLAGS = ("--pick", "--trial-id", "--max-params", "--max-macs", "--max-latency", "--max-error")


def pick_from_results(
    results: pd.DataFrame,
    pick: int | None = None,
    max_params: float | None = None,
    max_error: float | None = None,
    trial_id: int | None = None,
    max_macs: float | None = None,
    max_latency: float | None = None,
) -> pd.Series:
    """Choose one row of a search's results table by exactly one criterion.

    :param results: the search's table (``trial_id``, ``valid_error``, ``relative_params``,
        ``pareto``, ``subnet``, ...), e.g. ``results.csv``
    :param pick: index into the Pareto set sorted by ``relative_params`` ascending (0 = the
        smallest model, -1 = the largest): the ``pick`` column of ``pareto.md``; see
        :func:`pareto_front`
    :param trial_id: the row of this trial (on the Pareto set or not)
    :param max_params: the most accurate Pareto point (lowest ``valid_error``) with
        ``relative_params <= max_params``
    :param max_macs: the most accurate Pareto point with ``relative_macs <= max_macs``
    :param max_latency: the most accurate Pareto point with ``relative_latency <= max_latency``;
        only for results of a search with the latency objective
    :param max_error: the smallest Pareto point (lowest ``relative_params``) with
        ``valid_error <= max_error``
    :returns: the chosen row; ``SubNetwork.from_dict(json.loads(row["subnet"]))`` rebuilds it
    :raises NaspruneError: when not exactly one criterion is given, or no row qualifies
    """
    given = dict(zip(PICK_FLAGS, (pick, trial_id, max_params, max_macs, max_latency, max_error)))
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise NaspruneError(
            f"choose the sub-network by exactly one of {', '.join(PICK_FLAGS)}"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if trial_id is not None:
        return _row_of_trial(results, trial_id)
    front = pareto_front(results)
    if front.empty:
        raise NaspruneError("the results table has no Pareto point with a finite validation error")

    if pick is not None:
        if not -len(front) <= pick < len(front):
            raise NaspruneError(
                f"--pick {pick} is out of range: the Pareto set has {len(front)} point(s), "
                f"indices 0..{len(front) - 1} from smallest to largest (the 'pick' column of pareto.md)"
            )
        return front.iloc[pick]
    for flag, column, bound in (
        ("--max-params", "relative_params", max_params),
        ("--max-macs", "relative_macs", max_macs),
        ("--max-latency", "relative_latency", max_latency),
    ):
        if bound is not None:
            return _most_accurate_within(front, flag, column, bound)
    fitting = front[front["valid_error"] <= max_error]
    if fitting.empty:
        raise NaspruneError(
            f"no Pareto point has valid_error <= {max_error}; the best has {front['valid_error'].min():.4f}"
        )
    return fitting.iloc[0]  # the front is sorted smallest first


def _row_of_trial(results: pd.DataFrame, trial_id: int) -> pd.Series:
    if "trial_id" not in results.columns:
        raise NaspruneError("the results table lacks the column trial_id")
    rows = results[pd.to_numeric(results["trial_id"], errors="coerce") == trial_id]
    if rows.empty:
        raise NaspruneError(
            f"--trial-id {trial_id}: no such trial in the results (trials "
            f"{int(results['trial_id'].min())}..{int(results['trial_id'].max())})"
            if len(results) else f"--trial-id {trial_id}: the results table is empty"
        )
    row = rows.iloc[0]
    if not np.isfinite(float(row["valid_error"])):
        raise NaspruneError(f"--trial-id {trial_id}: that trial has no validation error (it failed)")
    return row


def _most_accurate_within(front: pd.DataFrame, flag: str, column: str, bound: float) -> pd.Series:
    """The Pareto point of lowest ``valid_error`` with ``column <= bound`` (ties: the smaller one)."""
    values = pd.to_numeric(front[column], errors="coerce") if column in front.columns else None
    if values is None or not np.isfinite(values.to_numpy(dtype=float)).any():
        if column == "relative_latency":
            raise NaspruneError(
                "--max-latency needs results of a search that measured latency (--objectives "
                "error,params,latency or similar); these results have no latency: choose by "
                "--max-params, --max-macs, --max-error, --pick or --trial-id"
            )
        raise NaspruneError(f"{flag}: the results table has no {column} column")
    if not bound > 0:
        raise NaspruneError(f"{flag} is a fraction of the full model's, got {bound}")
    fitting = front[(values <= bound).to_numpy()]
    if fitting.empty:
        raise NaspruneError(f"no Pareto point has {column} <= {bound}; the smallest has {values.min():.4f}")
    return fitting.sort_values(["valid_error", column], kind="stable").iloc[0]


def subnet_from_row(row: Mapping[str, Any]) -> SubNetwork:
    """The :class:`SubNetwork` stored in a results row's ``subnet`` column (JSON)."""
    value = row["subnet"]
    try:
        return SubNetwork.from_dict(json.loads(value) if isinstance(value, str) else value)
    except (ValueError, KeyError, TypeError) as err:
        raise NaspruneError(f"malformed 'subnet' entry in the results table: {err}") from err


RESULTS_TABLE = "results.csv"
RESULTS_SUMMARY = "summary.json"


@dataclass(frozen=True)
class SearchResults:
    """The output folder of a search or baseline, as export reads it: the table and its summary."""

    directory: Path
    table: pd.DataFrame
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SearchResults":
        """Read ``results.csv`` and ``summary.json`` from a results folder (or from beside its ``results.csv``)."""
        path = Path(path)
        table_path = path / RESULTS_TABLE if path.is_dir() else path
        try:
            table = pd.read_csv(table_path)
        except (OSError, ValueError) as err:
            raise NaspruneError(f"cannot read the search results {table_path}: {err}") from None
        summary_path = table_path.parent / RESULTS_SUMMARY
        try:
            summary = json.loads(summary_path.read_text())
        except FileNotFoundError:
            raise NaspruneError(
                f"{summary_path} is missing, so nothing says which checkpoint and method produced "
                f"{table_path}; pass --results the whole output folder of a search or baseline"
            ) from None
        except (OSError, ValueError) as err:
            raise NaspruneError(f"cannot read the results summary {summary_path}: {err}") from None
        if not isinstance(summary, dict):
            raise NaspruneError(f"{summary_path} is not a results summary (expected a JSON object)")
        if summary.get("complete") is False:
            raise NaspruneError(
                f"the results in {table_path.parent} are incomplete (the run was interrupted while writing "
                "them); rerun the same search to finish them, then export"
            )
        return cls(table_path.parent, table, summary)

    @property
    def method(self) -> str:
        return str(self.summary.get("method", "unknown"))

    @property
    def is_standard_nas(self) -> bool:
        """Results of ``nasprune nas``: Syne Tune's record in the summary, each row's best epoch."""
        return "syne_tune" in self.summary or "best_epoch" in self.table.columns


def check_row_has_weights(results: SearchResults, row: Mapping[str, Any]) -> None:
    """Refuse rows whose error was measured on weights that neither the checkpoint nor the results hold.

    A sub-network of a weight-sharing search, of head pruning, of retraining-free pruning (its
    mask values are in ``mask_scales.json``) or of layer dropping without fine-tuning is cut out of
    the checkpoint's weights. Standard NAS fine-tunes every trial on its own and deletes its
    weights when the trial ends; the layer-drop and importance-pruning baselines fine-tune each
    reduced model (importance pruning's unpruned row is the checkpoint); the reference-model
    baseline's row is another model altogether.
    """
    trial = int(row["trial_id"])
    if results.is_standard_nas:
        trial_folder = Path(str((results.summary.get("syne_tune") or {}).get("path", results.directory))) / str(trial)
        raise NaspruneError(
            f"{results.directory} holds standard-NAS results ('nasprune nas --method {results.method}'): trial "
            f"{trial} fine-tuned its own copy of the model and its weights were deleted when it ended, so "
            "there is nothing to cut out of --checkpoint; re-train that point first (fine-tune its sub-network "
            f"with 'python -m nasprune.snas.worker' and the trial's settings, see {trial_folder}), or train and "
            "search a super-network ('nasprune run') and export from that"
        )
    if results.method == "reference_model":
        raise NaspruneError(
            f"trial {trial} of {results.directory} is the reference model "
            f"{row.get('reference_model', '')!s} fine-tuned on its own, not a sub-network of --checkpoint; "
            "use that model directly"
        )
    fine_tuned_epochs = int((results.summary.get("baseline") or {}).get("epochs", 0) or 0)
    if results.method == "layer_drop" and fine_tuned_epochs and int(row.get("dropped_layers", 0) or 0) > 0:
        raise NaspruneError(
            f"trial {trial} of the layer-drop baseline in {results.directory} was fine-tuned for "
            f"{fine_tuned_epochs} epoch(s) after dropping layers and those weights were not kept; re-train it "
            "('nasprune baseline --method layer-drop' writes no weights), or export a row of a search instead"
        )
    if results.method == "importance_pruning" and importance_row_fine_tuned(row, fine_tuned_epochs):
        raise NaspruneError(
            f"trial {trial} of the importance-pruning baseline in {results.directory} was fine-tuned for "
            f"{fine_tuned_epochs} epoch(s) after pruning and those weights were not kept; re-train it "
            "('nasprune baseline --method importance' writes no weights), or export a row of a search instead"
        )


def _same_folder(named: str, checkpoint: Path) -> bool:
    named_path = Path(named)
    try:
        return named_path.exists() and os.path.samefile(named_path, checkpoint)
    except OSError:
        return False


def check_results_checkpoint(results: SearchResults, checkpoint: Path, fingerprint: str | None) -> None:
    """Refuse results that were not measured on ``checkpoint`` (whose fingerprint is ``fingerprint``).

    Results record the fingerprint of the checkpoint they searched (``checkpoint_fingerprint`` in
    ``summary.json``). Results written before fingerprints existed only name the checkpoint's
    folder: then a warning says so and the folder must be the same.
    """
    recorded = results.summary.get("checkpoint_fingerprint")
    if recorded is not None:
        if recorded != fingerprint:
            raise NaspruneError(
                f"the results in {results.directory} come from another checkpoint than {checkpoint} "
                f"(fingerprint {str(recorded)[:12]}… there, {str(fingerprint)[:12]}… here): pass the "
                "--checkpoint that was searched, or search this one"
            )
        return
    named = results.summary.get("checkpoint")
    logger.warning(
        "%s records no checkpoint fingerprint (written by an older nasprune): only checking that it names "
        "the checkpoint folder %s",
        results.directory / RESULTS_SUMMARY, checkpoint,
    )
    if not named or not _same_folder(str(named), checkpoint):
        raise NaspruneError(
            f"the results in {results.directory} come from another checkpoint than {checkpoint} "
            f"(their summary names {named or 'none'}): pass the --checkpoint that was searched"
        )


def mask_scales_for_row(results: SearchResults, row: Mapping[str, Any], subnet: SubNetwork) -> Any:
    """The tuned mask values of a retraining-free-pruning row (a ``MaskScales``), or None.

    None for rows of other methods, for runs without mask tuning, and for the unpruned model's row
    (never tuned). A tuned row whose values are gone cannot be exported: its error is that of the
    tuned values, not of the checkpoint's weights.
    """
    if results.method != "rfp" or not (results.summary.get("baseline") or {}).get("tune_masks", False):
        return None
    trial = str(int(row["trial_id"]))
    path = results.directory / MASK_SCALES_FILE
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as err:
        raise NaspruneError(f"cannot read the tuned mask values {path}: {err}") from None
    if trial not in recorded:
        if subnet.head_mask.all() and subnet.unit_mask.all():  # the unpruned model's row
            return None
        raise NaspruneError(
            f"{path} holds no tuned mask values for trial {trial}, so its error cannot be reproduced; "
            "rerun 'nasprune baseline --method rfp' into a fresh --output-dir"
        )
    try:
        return MaskScales.from_dict(recorded[trial], subnet)
    except NaspruneError as err:
        raise NaspruneError(f"{path}, trial {trial}: {err}") from None
