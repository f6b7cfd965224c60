"""Choosing a model from results: the ``pick`` order, the recommended point, the Pareto table and
its export line, the ways ``export`` picks a row, and cwd-independent summary paths."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasprune import choosing
from nasprune.errors import NaspruneError
from nasprune.export import pick_from_results
from nasprune.results import absolute_summary_paths, pareto_markdown, pareto_table


def results(latency: bool = False) -> pd.DataFrame:
    """Eight rows: an empty model, five Pareto points (out of order) and two dominated ones."""
    rows = [
        # trial, valid_error, test_error, relative_params, relative_macs, num_layers, pareto
        (0, 0.100, 0.12, 1.00, 1.00, 2, True),
        (1, 0.500, 0.50, 0.20, 0.00, 0, True),   # no layers: the majority class
        (2, 0.108, 0.11, 0.70, 0.60, 2, True),   # within one point of the full model
        (3, 0.150, 0.16, 0.40, 0.35, 1, True),
        (4, 0.300, 0.31, 0.30, 0.20, 1, True),
        (5, 0.104, 0.10, 0.85, 0.80, 2, True),
        (6, 0.200, np.nan, 0.90, 0.90, 2, False),
        (7, 0.400, np.nan, 0.50, 0.50, 1, False),
    ]
    table = pd.DataFrame(rows, columns=["trial_id", "valid_error", "test_error", "relative_params",
                                        "relative_macs", "num_layers", "pareto"])
    table["params"] = (table["relative_params"] * 1000).astype(int)
    table["macs"] = (table["relative_macs"] * 5000).astype(int)
    table["heads_per_layer"] = "[4, 4]"
    table["units_per_layer"] = "[64, 64]"
    table["subnet"] = "{}"
    if latency:
        table["relative_latency"] = [1.0, 0.1, 0.75, 0.5, 0.3, 0.9, 0.9, 0.6]
    return table


def summary(**changes) -> dict:
    return {"task": "rotten_tomatoes", "metric": "accuracy", "method": "local_search",
            "checkpoint": "/ckpt/epoch-1", "objectives": ["valid_error", "relative_params"],
            "full_model": {"valid_error": 0.1, "test_error": 0.12, "params": 1000}, **changes}


def test_pick_order_is_the_pareto_front_smallest_first_and_pick_takes_it():
    table = results()
    front = choosing.pareto_front(table)
    assert front["trial_id"].tolist() == [1, 4, 3, 2, 5, 0]
    for pick, trial in enumerate(front["trial_id"]):
        assert pick_from_results(table, pick=pick)["trial_id"] == trial
        assert choosing.pick_index(table, table.index[table["trial_id"] == trial][0]) == pick
    # A row with no finite error is never a pick, and does not shift the indices of the others.
    broken = table.copy()
    broken.loc[broken["trial_id"] == 4, "valid_error"] = np.nan
    assert choosing.pareto_front(broken)["trial_id"].tolist() == [1, 3, 2, 5, 0]


def test_the_recommended_point_is_the_smallest_within_one_point_of_the_full_model():
    table = results()
    label = choosing.recommended_point(table, 0.1)
    assert table.loc[label, "trial_id"] == 2  # 0.108 <= 0.1 + 0.01; trial 5 is larger
    assert table.loc[choosing.recommended_point(table, 0.1, tolerance=0.005), "trial_id"] == 5
    assert table.loc[choosing.recommended_point(table, 0.098), "trial_id"] == 2  # exactly one point worse
    assert choosing.recommended_point(table, 0.05) is None  # nothing that close
    assert choosing.recommended_point(table, None) is None
    # By the first size objective (MACs here): of trials 0, 2, 3 and 5, trial 3 has the fewest MACs.
    assert table.loc[choosing.recommended_point(table, 0.2, "relative_macs"), "trial_id"] == 3


def test_the_empty_model_is_marked_and_never_recommended():
    table = results()
    assert choosing.is_empty_model(table).tolist() == [False, True] + [False] * 6
    # Even where its error would qualify (a task the majority class solves), it is not chosen.
    assert table.loc[choosing.recommended_point(table, 0.495), "trial_id"] == 4
    shown = pareto_table(table, summary())
    assert shown.loc[shown["trial_id"] == 1, "note"].item() == choosing.EMPTY_MODEL_NOTE
    assert (shown.loc[shown["trial_id"] != 1, "note"] == "").all()


def test_pareto_table_has_the_pick_column_the_metric_beside_the_error_macs_and_units():
    shown = pareto_table(results(), summary())
    assert shown.columns[:6].tolist() == ["pick", "trial_id", "valid_accuracy", "valid_error",
                                          "test_accuracy", "test_error"]
    assert {"params", "relative_params", "macs", "relative_macs", "num_layers", "heads_per_layer",
            "units_per_layer", "note"} <= set(shown.columns)
    assert shown["pick"].tolist() == list(range(6))
    assert shown["trial_id"].tolist() == choosing.pareto_front(results())["trial_id"].tolist()
    np.testing.assert_allclose(shown["valid_accuracy"], 1 - shown["valid_error"])
    # The metric is named after the task's (Matthews correlation for CoLA).
    assert "valid_matthews_correlation" in pareto_table(results(), summary(metric=None, task="cola")).columns


def test_pareto_markdown_recommends_a_point_with_an_export_line_for_it(tmp_path):
    text = pareto_markdown(results(), summary(), tmp_path / "search")
    assert "| pick | trial_id | valid_accuracy | valid_error |" in text
    assert "Recommended: pick 3 (trial 2)" in text and "within 1 point" in text
    line = next(line for line in text.splitlines() if line.startswith("nasprune export"))
    words = shlex.split(line)
    assert words[words.index("--pick") + 1] == "3"
    assert words[words.index("--checkpoint") + 1] == "/ckpt/epoch-1"
    assert words[words.index("--results") + 1] == str((tmp_path / "search").resolve())


def test_the_recommendation_quotes_the_share_of_the_size_it_was_chosen_by(tmp_path):
    # Chosen by MACs, the sentence quotes the MAC share first, the parameter share in parentheses.
    by_macs = pareto_markdown(results(), summary(objectives=["valid_error", "relative_macs"]), tmp_path)
    assert "Recommended: pick 3 (trial 2), the smallest Pareto point by relative_macs" in by_macs
    assert "with 60.0% of the full model's MACs (70.0% of its parameters)." in by_macs
    by_params = pareto_markdown(results(), summary(), tmp_path)
    assert "with 70.0% of the full model's parameters (60.0% of its MACs)." in by_params
    # A size objective the table lacks falls back to parameters, and the sentence says so.
    only_params = results().drop(columns=["relative_macs"])
    text = pareto_markdown(only_params, summary(objectives=["valid_error", "relative_macs"]), tmp_path)
    assert "by relative_params" in text and "with 70.0% of the full model's parameters." in text


def test_no_export_line_where_the_weights_are_not_in_the_checkpoint(tmp_path):
    for not_exportable in (summary(syne_tune={"path": "x"}), summary(method="reference_model"),
                           summary(method="layer_drop", baseline={"epochs": 1}), summary(recovery={})):
        dropped = results().assign(dropped_layers=1)  # every row fine-tuned after dropping layers
        text = pareto_markdown(dropped, not_exportable, tmp_path)
        assert "Recommended: pick 3" in text and "nasprune export --checkpoint" not in text
    # Row by row, as export decides: an importance-pruning row is the checkpoint's only unpruned.
    importance = summary(method="importance_pruning", baseline={"epochs": 2})
    table = results().assign(budget=lambda t: t["relative_params"])
    assert "nasprune export --checkpoint" not in pareto_markdown(table, importance, tmp_path)
    table.loc[table["trial_id"] == 2, "budget"] = 1.0
    assert "nasprune export --checkpoint" in pareto_markdown(table, importance, tmp_path)
    assert "no point is recommended" in pareto_markdown(results(), summary(full_model=None), tmp_path)
    assert "No Pareto point is within 1 point" in pareto_markdown(
        results(), summary(full_model={"valid_error": 0.01}), tmp_path)


def test_export_picks_by_trial_id_macs_and_latency():
    table = results(latency=True)
    assert pick_from_results(table, trial_id=7)["trial_id"] == 7  # off the front is fine by name
    assert pick_from_results(table, max_macs=0.6)["trial_id"] == 2  # most accurate within 60% of MACs
    assert pick_from_results(table, max_macs=0.35)["trial_id"] == 3
    assert pick_from_results(table, max_latency=0.5)["trial_id"] == 3
    assert pick_from_results(table, max_latency=0.9)["trial_id"] == 5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"trial_id": 99}, "no such trial"),
        ({"trial_id": 1, "pick": 0}, "exactly one of --pick, --trial-id"),
        ({"max_macs": 0.0}, "fraction"),
        ({"max_macs": -0.1}, "fraction"),
        ({"max_latency": 0.5}, "--max-latency needs results of a search that measured latency"),
    ],
)
def test_export_pick_errors(kwargs, match):
    with pytest.raises(NaspruneError, match=match):
        pick_from_results(results(), **kwargs)


def test_a_failed_trial_cannot_be_picked_by_id():
    table = results()
    table.loc[table["trial_id"] == 6, "valid_error"] = np.nan
    with pytest.raises(NaspruneError, match="no validation error"):
        pick_from_results(table, trial_id=6)


def test_summary_paths_do_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorded = absolute_summary_paths({
        "checkpoint": "run/supernet/epoch-1",
        "data_options": {"train_file": "train.csv", "validation_file": None, "max_seq_length": 64},
        "syne_tune": {"path": "st/tuner"},
        "files": {"table": "out/results.csv"},
    })
    assert recorded["checkpoint"] == str(tmp_path / "run/supernet/epoch-1")
    assert recorded["data_options"] == {"train_file": str(tmp_path / "train.csv"), "validation_file": None,
                                        "max_seq_length": 64}
    assert recorded["syne_tune"]["path"] == str(tmp_path / "st/tuner")
    assert recorded["files"]["table"] == str(tmp_path / "out/results.csv")
    assert all(Path(v).is_absolute() for v in json.loads(json.dumps(recorded["files"])).values())
