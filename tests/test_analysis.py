"""Pareto masks, hypervolume, plots, tables and atomic writers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nasprune.analysis import (
    hypervolume,
    hypervolume_over_time,
    markdown_table,
    pareto_mask,
    plot_front,
)
from nasprune.files import to_jsonable, write_csv_atomic, write_json_atomic


# --- Pareto masks -----------------------------------------------------------------------
def test_pareto_mask_on_hand_made_points():
    points = np.array(
        [
            [0.1, 0.9],  # 0 front
            [0.5, 0.5],  # 1 front
            [0.6, 0.6],  # 2 dominated by 1
            [0.9, 0.1],  # 3 front
            [0.5, 0.5],  # 4 duplicate of 1: only the first counts
            [0.9, 0.2],  # 5 dominated by 3 (equal in one objective)
            [1.0, 1.0],  # 6 dominated
            [0.1, 0.9],  # 7 duplicate of 0
        ]
    )
    assert pareto_mask(points).tolist() == [True, True, False, True, False, False, False, False]


def test_pareto_mask_edge_cases():
    assert pareto_mask(np.zeros((0, 2))).tolist() == []
    assert pareto_mask(np.array([[1.0, 2.0]])).tolist() == [True]
    assert pareto_mask(np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])).tolist() == [True, False, False]
    # Non-finite rows never count, and do not hide the others.
    assert pareto_mask(np.array([[np.nan, 0.0], [0.5, 0.5], [np.inf, 0.1]])).tolist() == [False, True, False]
    # One objective: the minimum only.
    assert pareto_mask(np.array([3.0, 1.0, 2.0, 1.0])).tolist() == [False, True, False, False]


# --- hypervolume ------------------------------------------------------------------------
def test_hypervolume_of_known_sets():
    assert hypervolume(np.array([[0.5, 0.5]]), (1, 1)) == pytest.approx(0.25)
    # Two points: 0.8 * 0.2 + 0.2 * 0.8 - 0.2 * 0.2 = 0.28.
    assert hypervolume(np.array([[0.2, 0.8], [0.8, 0.2]]), (1, 1)) == pytest.approx(0.28)
    # Dominated points and duplicates add nothing.
    assert hypervolume(np.array([[0.2, 0.8], [0.8, 0.2], [0.9, 0.9], [0.2, 0.8]]), (1, 1)) == pytest.approx(0.28)
    # Points beyond the reference point contribute 0, even partly beyond it.
    assert hypervolume(np.array([[1.5, 0.5], [0.5, 1.0]]), (1, 1)) == 0.0
    assert hypervolume(np.array([[1.5, 0.5], [0.5, 0.5]]), (1, 1)) == pytest.approx(0.25)
    assert hypervolume(np.zeros((0, 2)), (1, 1)) == 0.0
    # Three objectives.
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), (1, 1, 1)) == pytest.approx(0.125)


def test_hypervolume_uses_the_fixed_normalisation():
    points = np.array([[20.0, 0.5]])  # e.g. latency in ms and relative size
    bounds = ([0.0, 0.0], [40.0, 1.0])
    # Normalised to (0.5, 0.5); the reference point is in normalised units.
    assert hypervolume(points, (1, 1), bounds) == pytest.approx(0.25)
    assert hypervolume(points, (2, 2), bounds) == pytest.approx(2.25)
    # The normalisation is fixed: adding worse points does not change the measured box.
    more = np.vstack([points, [[80.0, 0.9]]])
    assert hypervolume(more, (1, 1), bounds) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        hypervolume(points, (1, 1), ([0.0, 1.0], [40.0, 1.0]))


def test_the_reference_point_counts_the_unpruned_model():
    from nasprune import analysis, workflows

    assert analysis.REFERENCE_POINT == 1.1 and workflows.REFERENCE_POINT == analysis.REFERENCE_POINT
    assert analysis.reference_point(3) == [1.1, 1.1, 1.1]
    assert "1.1" in analysis.HYPERVOLUME_DEFINITION and "\n" not in analysis.HYPERVOLUME_DEFINITION
    full_model = np.array([[0.2, 1.0]])  # relative size exactly 1: 0.9 x 0.1
    assert hypervolume(full_model, analysis.reference_point(2)) == pytest.approx(0.09)
    # A sub-network timed at 1.05 of the full model still counts; one at 1.1 does not.
    assert hypervolume(np.array([[0.3, 1.05]]), analysis.reference_point(2)) == pytest.approx(0.8 * 0.05)
    assert hypervolume(np.array([[0.3, 1.1]]), analysis.reference_point(2)) == 0.0


def test_hypervolume_over_time_is_monotone():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "error": rng.random(40),
            "size": rng.random(40),
            "elapsed": rng.permutation(40).astype(float),
        }
    )
    df.loc[5, "error"] = np.nan  # a failed evaluation
    curve = hypervolume_over_time(df, ["error", "size"], "elapsed", (1, 1), bounds=([0, 0], [1, 1]))
    assert list(curve.columns) == ["elapsed", "hypervolume"]
    assert len(curve) == len(df) and curve["elapsed"].is_monotonic_increasing
    assert np.all(np.diff(curve["hypervolume"]) >= -1e-12)
    assert curve["hypervolume"].iloc[-1] == pytest.approx(
        hypervolume(df[["error", "size"]].to_numpy(), (1, 1))
    )


# --- plots and files --------------------------------------------------------------------
def test_plot_front_writes_a_png(tmp_path):
    df = pd.DataFrame({"size": [0.1, 0.5, 0.9, 0.6], "error": [0.8, 0.3, 0.1, 0.5]})
    path = plot_front(df, "size", "error", tmp_path / "plots" / "front.png", title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    df["pareto"] = [True, True, True, False]
    plot_front(df, "size", "error", tmp_path / "front2.png")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["front.png", "front2.png", "plots"]


def test_atomic_writers_leave_no_temporary_files(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]})
    write_csv_atomic(df, tmp_path / "results.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results.csv"), df)
    obj = {
        "n": np.int64(3),
        "x": np.float32(0.5),
        "flag": np.bool_(True),
        "array": np.arange(3),
        "nan": float("nan"),
        "nested": [(1, np.float64(2.0))],
    }
    write_json_atomic(obj, tmp_path / "summary.json")
    loaded = json.loads((tmp_path / "summary.json").read_text())
    assert loaded == {"n": 3, "x": 0.5, "flag": True, "array": [0, 1, 2], "nan": None, "nested": [[1, 2.0]]}
    # Overwriting replaces the file; a failed write keeps the old one and cleans up.
    write_json_atomic({"v": 1}, tmp_path / "summary.json")
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, tmp_path / "summary.json")
    with pytest.raises(RuntimeError):
        write_csv_atomic(_Exploding(), tmp_path / "results.csv")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"v": 1}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results.csv"), df)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "summary.json"]


class _Exploding:
    def to_csv(self, handle, index=False):
        handle.write("half a fi")
        raise RuntimeError("disk full")


def test_to_jsonable_keeps_plain_values():
    assert to_jsonable({"a": [1, "x", None, 2.5]}) == {"a": [1, "x", None, 2.5]}


def test_markdown_table_needs_no_tabulate():
    df = pd.DataFrame({"method": ["nsga2", "a|b"], "hv": [0.123456, np.nan], "n": [10, 20]})
    assert markdown_table(df) == (
        "| method | hv | n |\n"
        "|:---|---:|---:|\n"
        "| nsga2 | 0.1235 | 10 |\n"
        "| a\\|b |  | 20 |\n"
    )
