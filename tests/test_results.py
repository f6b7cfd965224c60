"""The one result-row builder, summary builder and writer (nasprune.results): exact columns and keys."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nasprune.errors import NaspruneError
from nasprune.results import (
    begin_search_outputs,
    build_summary,
    check_search_output_dir,
    layout_columns,
    result_row,
    write_results,
)
from nasprune.subnet import ModelShape, SubNetwork

SHAPE = ModelShape(num_layers=2, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=16)
MEASURED = {"valid_error": 0.2, "params": 1000, "relative_params": 0.5, "macs": 4000, "relative_macs": 0.4}


def _subnet(heads=(4, 2), units=(16, 0)) -> SubNetwork:
    return SubNetwork.from_counts(SHAPE, heads, units)


def test_a_row_has_id_config_measurements_layout_then_extra_columns():
    subnet = _subnet()
    row = result_row(7, subnet, {**MEASURED, "elapsed_seconds": 1.5}, config={"a": 1, "b": 0}, extra={"budget": 0.5})
    assert list(row) == [
        "trial_id", "config_a", "config_b", *MEASURED, "elapsed_seconds",
        "num_layers", "heads_per_layer", "units_per_layer", "subnet", "budget",
    ]
    assert row["trial_id"] == 7 and row["config_a"] == 1 and row["budget"] == 0.5
    assert row["num_layers"] == 2  # the second layer keeps heads, so it still computes
    assert json.loads(row["heads_per_layer"]) == [4, 2] and json.loads(row["units_per_layer"]) == [16, 0]
    assert json.loads(row["subnet"]) == subnet.to_dict()
    assert {k: row[k] for k in layout_columns(subnet)} == layout_columns(subnet)


def test_a_space_of_more_than_64_variables_keeps_its_config_in_subnet_only():
    config = {f"bit{i}": 1 for i in range(65)}
    row = result_row(0, _subnet(), MEASURED, config=config)
    assert not any(name.startswith("config_") for name in row)
    assert len([n for n in result_row(0, _subnet(), MEASURED, config=dict(list(config.items())[:64])) if n.startswith("config_")]) == 64


def _table(latency: bool = False) -> pd.DataFrame:
    rows = []
    for i, (error, size, subnet) in enumerate([(0.1, 1.0, _subnet((4, 4), (16, 16))), (0.3, 0.4, _subnet()),
                                               (0.4, 0.6, _subnet((2, 2), (8, 8)))]):
        measured = {**MEASURED, "valid_error": error, "relative_params": size, "test_error": error + 0.01}
        if latency:
            measured |= {"latency_seconds": 0.01 * size, "relative_latency": size}
        rows.append(result_row(i, subnet, measured, extra={"best_epoch": 2, "epochs": 3}))
    table = pd.DataFrame(rows)
    table["pareto"] = [True, True, False]
    return table


def test_the_summary_has_the_common_keys_in_order_and_pareto_entries_by_size():
    source = {"task": "t", "model": "m", "checkpoint": "/c", "checkpoint_fingerprint": "f", "data_options": {}}
    summary = build_summary(
        _table(), ["valid_error", "relative_params"], source=source, method="nsga2", search_space="small", seed=3,
        run={"search_seconds": 9.0}, full_model={"valid_error": 0.1}, details={"baseline": {"x": 1}},
    )
    assert list(summary) == [
        "task", "model", "checkpoint", "checkpoint_fingerprint", "data_options", "method", "search_space", "seed",
        "objectives", "num_evaluated", "search_seconds", "hypervolume", "reference_point",
        "hypervolume_definition", "full_model", "baseline", "pareto_set",
    ]
    assert summary["objectives"] == ["valid_error", "relative_params"] and summary["num_evaluated"] == 3
    assert [entry["trial_id"] for entry in summary["pareto_set"]] == [1, 0]  # smallest first
    entry = summary["pareto_set"][0]
    assert list(entry) == [
        "trial_id", "valid_error", "test_error", "params", "relative_params", "macs", "relative_macs", "subnet",
    ]
    assert type(entry["params"]) is int and type(entry["valid_error"]) is float and entry["subnet"] == _subnet().to_dict()


def test_pareto_entries_add_latency_when_measured_and_the_integer_columns_asked_for():
    summary = build_summary(
        _table(latency=True), ["valid_error", "relative_latency"], source={"task": "t", "model": "m"},
        method="moasha", search_space="small", seed=0, run={}, full_model=None, pareto_int_columns=("best_epoch", "epochs"),
    )
    assert list(summary)[:3] == ["task", "model", "method"]
    assert list(summary["pareto_set"][0]) == [
        "trial_id", "valid_error", "test_error", "params", "relative_params", "macs", "relative_macs",
        "latency_seconds", "relative_latency", "best_epoch", "epochs", "subnet",
    ]


def test_the_writer_writes_every_file_and_the_summary_last_as_complete(tmp_path):
    metrics = ["valid_error", "relative_params"]
    table = _table()
    summary = build_summary(table, metrics, source={"task": "t", "model": "m"}, method="nsga2",
                            search_space="small", seed=0, run={}, full_model=None)
    seen = {}
    result = write_results(table, summary, metrics, tmp_path, write_more=lambda files: seen.update(
        complete=json.loads(files["summary"].read_text())["complete"] if files["summary"].exists() else None))
    assert seen == {"complete": None}  # nothing complete before the extra files are written
    written = json.loads((tmp_path / "summary.json").read_text())
    assert list(written)[-2:] == ["pareto_set", "complete"] and written["complete"] is True
    assert list(pd.read_csv(tmp_path / "results.csv").columns) == list(table.columns)
    assert set(result.files) == {"table", "pareto_table", "summary", "plot"}
    assert all(path.is_file() for path in result.files.values())

    # A rerun marks the summary incomplete first; another run's settings are refused.
    begin_search_outputs(tmp_path, overwrite=False)
    assert json.loads((tmp_path / "summary.json").read_text())["complete"] is False
    with pytest.raises(NaspruneError, match="method: nsga2 there, ehvi now"):
        check_search_output_dir(tmp_path, {"method": "ehvi", "seed": 0}, overwrite=False)
    check_search_output_dir(tmp_path, {"method": "nsga2", "seed": 0}, overwrite=False)
