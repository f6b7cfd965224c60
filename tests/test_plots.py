"""What the plots draw, read back from the matplotlib objects: labels, lines, limits, highlights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasprune import analysis, choosing, plots
from nasprune.report import plots as report_plots
from nasprune.report.runs import Run

FULL = {"valid_error": 0.20, "test_error": 0.22, "params": 22_700_000, "relative_params": 1.0, "macs": 10**9,
        "relative_macs": 1.0}
SUMMARY = {"task": "rotten_tomatoes", "method": "local_search", "objectives": ["valid_error", "relative_params"],
           "data_options": {"max_seq_length": 64}, "full_model": FULL, "checkpoint": "/tmp/ckpt"}


def _results() -> pd.DataFrame:
    # trial 5 is the empty model (0 layers, majority class) at error 0.5, far above the rest.
    rows = [
        (0, 0.20, 1.00, 0.21, 6), (1, 0.205, 0.80, 0.23, 5), (2, 0.21, 0.70, 0.24, 4), (3, 0.26, 0.62, 0.27, 3),
        (4, 0.30, 0.75, np.nan, 4), (5, 0.50, 0.53, 0.50, 0), (6, 0.24, 0.90, np.nan, 5),
    ]
    table = pd.DataFrame(rows, columns=["trial_id", "valid_error", "relative_params", "test_error", "num_layers"])
    table["pareto"] = analysis.pareto_mask(table[["valid_error", "relative_params"]].to_numpy())
    return table


def _labelled(axes, prefix: str) -> list:
    return [c for c in axes.collections if str(c.get_label()).startswith(prefix)]


def test_front_plot_says_what_its_axes_mean_and_keeps_the_empty_model_off_the_limits():
    table = _results()
    figure = plots.front_figure(table, "relative_params", "valid_error", "toy", summary=SUMMARY)
    validation, test = figure.axes
    assert validation.get_xlabel() == "parameters relative to the full model (22.7M)"
    assert validation.get_ylabel() == "validation error (1 − accuracy)"
    assert test.get_ylabel() == "test error (1 − accuracy)"
    for axes in (validation, test):
        levels = sorted(line.get_ydata()[0] for line in axes.get_lines() if str(line.get_gid()).startswith("level-"))
        full_error = FULL["valid_error"] if axes is validation else FULL["test_error"]
        assert levels == pytest.approx(sorted(1 - share * (1 - full_error) for share in (1.0, 0.95, 0.9)))
        low, high = axes.get_ylim()
        assert high < 0.5  # the empty model's error does not stretch the axis ...
        empty = _labelled(axes, "empty model")
        assert len(empty) == 1 and empty[0].get_offsets()[0][1] == pytest.approx(high)  # ... it sits on the edge
        assert [c.get_label() for c in _labelled(axes, "full model")] == [f"full model ({1 - full_error:.1%} accuracy)"]
    # The recommended point: the smallest within one point of the full model's accuracy (trial 2, 0.21).
    label = choosing.recommended_point(table, 0.20)
    assert table.loc[label, "trial_id"] == 2
    ring = _labelled(validation, "recommended")
    assert len(ring) == 1 and ring[0].get_label() == f"recommended (pick {choosing.pick_index(table, label)})"
    assert list(ring[0].get_offsets()[0]) == pytest.approx([0.70, 0.21])
    # The test panel holds the Pareto set only: the evaluated points off the front are not drawn there.
    assert not _labelled(test, "evaluated") and len(_labelled(validation, "evaluated")) == 1
    # One x range for both panels, over every point (the empty model's size 0.53 included).
    assert validation.get_xlim() == test.get_xlim() and validation.get_xlim()[0] < 0.53 < 1.0 < validation.get_xlim()[1]
    front = _labelled(test, "Pareto set")[0].get_offsets()
    assert sorted(front[:, 0].tolist()) == [0.62, 0.70, 0.80, 1.00]


def _default_run_like() -> tuple[pd.DataFrame, dict]:
    """As the default run: the empty model and four near-empty sub-networks at the majority-class
    error (0.393 on validation), the rest and the front near 0.17, the full model at 0.196."""
    rng = np.random.default_rng(0)
    macs = np.r_[0.0, 0.02, 0.03, 0.05, 0.08, 0.395, 0.503, 0.532, rng.uniform(0.4, 0.56, 20)]
    valid = np.r_[0.393, 0.393, 0.393, 0.393, 0.393, 0.173, 0.172, 0.168, rng.uniform(0.175, 0.23, 20)]
    table = pd.DataFrame({"trial_id": range(len(macs)), "valid_error": valid, "relative_macs": macs,
                          "relative_params": 0.53 + 0.47 * macs, "num_layers": [0] + [1] * 4 + [6] * 23})
    table["pareto"] = analysis.pareto_mask(table[["valid_error", "relative_macs"]].to_numpy())
    table["test_error"] = np.where(table["pareto"], np.r_[0.427, [0.4] * 4, 0.1955, 0.195, 0.1945, [0.2] * 20], np.nan)
    full = {**FULL, "valid_error": 0.196, "test_error": 0.192}
    return table, {**SUMMARY, "objectives": ["valid_error", "relative_macs"], "full_model": full}


def test_points_no_better_than_the_empty_model_sit_on_the_edge_and_no_text_overlaps():
    table, summary = _default_run_like()
    figure = plots.front_figure(table, "relative_macs", "valid_error", "toy", summary=summary)
    renderer = figure.canvas.get_renderer()
    validation, test = figure.axes
    for axes in figure.axes:
        low, high = axes.get_ylim()
        # The limits come from the informative points and the 90% line (error 0.2764 on validation), not 0.39.
        assert high < 0.33 and low > 0.15
        texts = [t for t in axes.texts if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in texts] + [axes.get_legend().get_window_extent(renderer)]
        for i, first in enumerate(boxes):
            for second in boxes[i + 1:]:
                assert not first.overlaps(second), [t.get_text() for t in texts]
    # The four near-empty sub-networks: drawn on the upper edge, named, their error in the note.
    rest = _labelled(validation, "no better than the empty model")
    assert len(rest) == 1 and sorted(rest[0].get_offsets()[:, 0].tolist()) == [0.02, 0.03, 0.05, 0.08]
    assert rest[0].get_offsets()[:, 1].tolist() == pytest.approx([validation.get_ylim()[1]] * 4)
    notes = [t.get_text() for t in validation.texts if "above" in t.get_text()]
    assert notes == ["empty model and 4 no better: 0.393 (above)"]
    assert [t.get_text() for t in test.texts if "above" in t.get_text()] == ["empty model: 0.427 (above)"]


def test_front_plot_in_macs_names_the_length_and_writes_a_png(tmp_path):
    table = _results().assign(relative_macs=lambda t: t["relative_params"] - 0.5)
    summary = {**SUMMARY, "objectives": ["valid_error", "relative_macs"]}
    figure = plots.front_figure(table, "relative_macs", "valid_error", summary=summary)
    assert figure.axes[0].get_xlabel() == "MACs at length 64, relative to the full model"
    path = analysis.plot_front(table, "relative_macs", "valid_error", tmp_path / "pareto.png", summary=summary)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_front_plot_without_a_summary_or_a_test_error_still_draws_the_front():
    table = _results().drop(columns=["test_error", "num_layers"])
    validation, test = plots.front_figure(table, "relative_params", "valid_error").axes
    assert validation.get_xlabel() == "parameters relative to the full model"
    assert not _labelled(validation, "recommended") and not _labelled(validation, "full model")
    assert [t.get_text() for t in test.texts] == ["no test error was measured"]


# --- nasprune compare's plots -----------------------------------------------------------------
def _run(label: str, seed: int, points, empty_error: float = 0.5) -> Run:
    """A run whose table holds ``points`` (size, error) and the empty model at (0.53, empty_error)."""
    points = np.asarray(points, float)
    table = pd.DataFrame({
        "trial_id": np.arange(len(points) + 1), "relative_params": np.r_[points[:, 0], 0.53],
        "valid_error": np.r_[points[:, 1], empty_error], "num_layers": [3] * len(points) + [0],
        "elapsed_seconds": np.arange(1.0, len(points) + 2),
    })
    table["test_error"] = table["valid_error"] + 0.01
    summary = {"task": "rotten_tomatoes", "seed": seed, "full_model": FULL, "data_options": {"max_seq_length": 64}}
    return Run(Path(f"/runs/{label}/{seed}"), summary, table, label=label)


def test_the_median_attainment_surface_is_what_half_of_the_seeds_reached():
    fronts = [np.array([[0.6, 0.3]]), np.array([[0.7, 0.25]]), np.array([[0.8, 0.2]])]
    surfaces = report_plots.attainment_surfaces(fronts)
    assert surfaces[report_plots.BEST].tolist() == [[0.6, 0.3], [0.7, 0.25], [0.8, 0.2]]
    # (0.7, 0.3) is reached by the first two seeds, (0.8, 0.25) by the last two.
    assert surfaces[report_plots.MEDIAN].tolist() == [[0.7, 0.3], [0.8, 0.25]]
    assert surfaces[report_plots.WORST].tolist() == [[0.8, 0.3]]
    grid = np.array([0.5, 0.7, 0.75, 0.9])
    assert report_plots.staircase(surfaces[report_plots.MEDIAN], grid).tolist() == [np.inf, 0.3, 0.3, 0.25]


def test_compare_plot_draws_one_curve_per_method_in_a_panel_per_order():
    runs = []
    for seed in range(3):
        shift = 0.01 * seed
        for method in ("local_search", "nsga2"):
            for order in ("natural", "rewired"):
                runs.append(_run(f"ws/{method}/{order}", seed, [[0.6, 0.3 + shift], [0.8, 0.22 + shift], [1.0, 0.2]]))
        runs.append(_run("baseline/rfp", seed, [[0.7, 0.28 + shift], [0.9, 0.21]]))
    figure = report_plots.error_vs_size_figure(runs, "relative_params", "valid_error", 0.2, "rotten_tomatoes")
    natural, rewired = figure.axes
    assert "natural" in natural.get_title() and "rewired" in rewired.get_title()
    for axes, order in ((natural, "natural"), (rewired, "rewired")):
        curves = sorted(line.get_gid() for line in axes.get_lines() if str(line.get_gid()).startswith("median:"))
        # Each panel: its order's searches, and the baseline for reference; one curve per method, not per seed.
        assert curves == ["median:baseline/rfp", f"median:ws/local_search/{order}", f"median:ws/nsga2/{order}"]
        assert axes.get_ylim()[1] < 0.5  # the empty model (error 0.5) does not stretch the axis
        assert axes.get_xlabel() == "parameters relative to the full model (22.7M)"
    assert natural.get_ylabel() == "validation error (1 − accuracy)"
    median = next(line for line in natural.get_lines() if line.get_gid() == "median:ws/nsga2/natural")
    # The second-best seed's front, after the empty model, which stays in the data (above the axes).
    assert median.get_xdata()[:4].tolist() == pytest.approx([0.53, 0.6, 0.8, 1.0])
    assert median.get_ydata()[:4].tolist() == pytest.approx([0.5, 0.31, 0.23, 0.2])
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "ws/local_search (seeds: 3)" in legend and "baseline/rfp (seeds: 3)" in legend
    assert "pruning baseline" in legend and "weight-sharing search" in legend
    assert report_plots.ORDERS["natural"] in legend and report_plots.ORDERS["rewired"] in legend


def test_method_styles_stay_apart_at_thirteen_methods():
    labels = [f"ws/{m}/{o}" for m in ("random_search", "morea", "local_search", "nsga2", "ehvi")
              for o in ("natural", "rewired")] + ["baseline/rfp", "baseline/layer_drop", "baseline/head_pruning"]
    styles = report_plots.method_styles(labels)
    assert len({tuple(styles[label].colour) for label in labels}) == 8  # one per method, shared by both orders
    assert styles["ws/nsga2/natural"].colour == styles["ws/nsga2/rewired"].colour
    assert {styles[label].marker for label in labels if label.startswith("baseline")} == {"s"}
    assert {styles[label].marker for label in labels if label.startswith("ws")} == {"o"}
    assert report_plots.panels_of(styles) == ["natural", "rewired"]
    flat = report_plots.method_styles([label.replace("/", "-") for label in labels])  # 13 families, one panel
    assert len({tuple(style.colour) for style in flat.values()}) == 13 and report_plots.panels_of(flat) == [None]


def test_hypervolume_over_time_draws_the_median_over_seeds():
    traces = {
        "ws/local_search/natural": [pd.DataFrame({"seconds": [1.0, 100.0], "hypervolume": [0.1, v]}) for v in (0.2, 0.3, 0.4)],
        "baseline/rfp": [pd.DataFrame({"seconds": [2.0], "hypervolume": [0.25]})],
    }
    figure = report_plots.hypervolume_over_time_figure(traces, "hv")
    (axes,) = figure.axes
    median = next(line for line in axes.get_lines() if line.get_gid() == "median:ws/local_search/natural")
    assert median.get_ydata()[-1] == pytest.approx(0.3) and median.get_ydata()[0] == pytest.approx(0.1)
    assert axes.get_xscale() == "log" and axes.get_ylabel() == "hypervolume (higher is better)"
    # Within one decade the time axis stays linear: a log axis there would show one or two ticks.
    narrow = {label: [t.assign(seconds=t["seconds"] + 100.0) for t in runs] for label, runs in traces.items()}
    assert report_plots.hypervolume_over_time_figure(narrow, "hv").axes[0].get_xscale() == "linear"
