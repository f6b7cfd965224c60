"""``nasprune compare`` and the experiment grid on hand-made results folders (no models)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasprune import report as cmp
from nasprune.errors import NaspruneError

REPO = Path(__file__).resolve().parents[1]


def write_run(folder: Path, points, *, method="nsga2", seed=0, task="rte", full_error=0.2, extra=None, times=None):
    """A results folder with the search's columns; ``points`` are (valid_error, relative_params)."""
    folder.mkdir(parents=True)
    points = np.asarray(points, float)
    table = pd.DataFrame(
        {
            "trial_id": np.arange(len(points)),
            "valid_error": points[:, 0],
            "test_error": points[:, 0] + 0.01,
            "params": (points[:, 1] * 1000).astype(int),
            "relative_params": points[:, 1],
            "macs": (points[:, 1] * 100).astype(int),
            "relative_macs": points[:, 1],
            "elapsed_seconds": times if times is not None else np.arange(1, len(points) + 1, dtype=float),
            "num_layers": 2,
            "heads_per_layer": "[1, 1]",
            "units_per_layer": "[2, 2]",
            "subnet": "{}",
        }
    )
    table["pareto"] = True
    table.to_csv(folder / "results.csv", index=False)
    summary = {
        "task": task, "model": "m", "method": method, "search_space": "small", "seed": seed,
        "objectives": ["valid_error", "relative_params"], "hypervolume": 0.0, "reference_point": [1, 1],
        "full_model": {"valid_error": full_error, "test_error": full_error + 0.01}, "pareto_set": [],
        **(extra or {}),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


# --- hypervolume and ranks on hand-made inputs -----------------------------------------------
def test_known_hypervolumes_with_every_normalisation(tmp_path):
    a = cmp.load_run(write_run(tmp_path / "a", [[0.2, 0.8], [0.8, 0.2], [0.9, 0.9]]))
    b = cmp.load_run(write_run(tmp_path / "b", [[0.5, 0.5]], method="rfp", extra={"baseline": {}}))
    unit = cmp.make_normalisation([a, b], ["valid_error", "relative_params"])
    assert unit.reference_point == (1.1, 1.1)
    # Two boxes 0.9 x 0.3 overlapping in 0.3 x 0.3; (0.9, 0.9) is dominated.
    assert cmp.run_hypervolume(a, unit) == pytest.approx(0.27 + 0.27 - 0.09)
    assert cmp.run_hypervolume(b, unit) == pytest.approx(0.6 * 0.6)
    task = cmp.make_normalisation([a, b], ["valid_error", "relative_params"], "task")
    # Bounds over all points of the task: error in [0.2, 0.9], size in [0.2, 0.9]; reference 1.1.
    assert task.bounds["rte"] == ([0.2, 0.2], [0.9, 0.9])
    assert cmp.run_hypervolume(b, task) == pytest.approx((1.1 - 3 / 7) ** 2)
    paper = cmp.make_normalisation([a, b], ["valid_error", "relative_params"], "paper")
    assert paper.reference_point == (2.0, 2.0)
    # The four errors 0.2 < 0.5 < 0.8 < 0.9 (and the same sizes) become the quantiles 0, 1/3, 2/3, 1.
    np.testing.assert_allclose(paper.transform("rte", a.table[["valid_error", "relative_params"]].to_numpy()),
                               [[0, 2 / 3], [2 / 3, 0], [1, 1]], atol=1e-12)
    assert cmp.run_hypervolume(b, paper) == pytest.approx((2 - 1 / 3) ** 2)
    assert cmp.run_hypervolume(a, paper) == pytest.approx(2 * (2 * 4 / 3) - (4 / 3) ** 2)
    assert json.loads(json.dumps(paper.to_dict()))["quantile_points"] == {"rte": 4}
    assert a.kind == "ws" and b.kind == "baseline" and a.group(["kind", "method"]) == "ws/nsga2"


def test_hypervolume_over_time_adds_the_checkpoint_training_time(tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "nasprune.json").write_text(json.dumps({"strategy": "full", "history": [{"seconds": 10.0}, {"seconds": 5.0}]}))
    run = cmp.load_run(write_run(tmp_path / "r", [[0.5, 0.5], [0.2, 0.8]], times=np.array([1.0, 2.0]),
                                 extra={"checkpoint": str(checkpoint)}))
    assert run.training_seconds == 15.0 and run.strategy == "full" and run.order == "natural"
    (checkpoint / "nasprune.json").write_text(json.dumps(
        {"strategy": "full", "rewiring": {"importance": "fisher"}, "history": [{"seconds": 10.0}, {"seconds": 5.0}]}))
    assert run.order == "rewired" and run.group(["method", "order"]) == "nsga2/rewired"
    norm = cmp.make_normalisation([run], ["valid_error", "relative_params"])
    trace = cmp.run_trace(run, norm)
    assert trace["seconds"].tolist() == [16.0, 17.0]
    # Reference 1.1: 0.6 x 0.6, then (0.2, 0.8) adds 0.3 x 0.3.
    assert trace["hypervolume"].tolist() == pytest.approx([0.36, 0.36 + 0.3 * 0.3])
    assert cmp.run_trace(run, norm, include_training_time=False)["seconds"].tolist() == [1.0, 2.0]
    mean, std = cmp.mean_trace([trace, trace.assign(hypervolume=[0.1, 0.2])], np.array([0.0, 16.0, 20.0]))
    assert mean.tolist() == pytest.approx([0.0, 0.23, 0.325])
    assert std.tolist() == pytest.approx([0.0, 0.13, 0.125])
    paper = cmp.run_trace(run, cmp.make_normalisation([run], ["valid_error", "relative_params"], "paper"))
    # Quantiles of two points: (0.5, 0.5) -> (1, 0), then (0.2, 0.8) -> (0, 1); reference 2.
    assert paper["hypervolume"].tolist() == pytest.approx([1 * 2, 2 + 2 - 1])


def test_hypervolume_over_time_charges_a_rewired_supernet_its_finetuned_source_and_rewiring(tmp_path, monkeypatch):
    # The default path: a copy fine-tuned first (its own history), then importance and rewiring
    # (the record's seconds), then the super-network's epochs.
    out = tmp_path / "work" / "nasprune-output"
    finetuned, supernet = out / "supernet" / "rewiring-finetune" / "epoch-1", out / "supernet" / "epoch-1"
    for folder in (finetuned, supernet):
        folder.mkdir(parents=True)
    (finetuned / "nasprune.json").write_text(json.dumps({"strategy": "standard", "history": [{"seconds": 60.0}]}))

    def write_supernet(source: str, seconds: float | None = 7.0) -> None:
        rewiring = {"importance": "fisher", "source": source}
        if seconds is not None:
            rewiring["seconds"] = seconds
        (supernet / "nasprune.json").write_text(json.dumps(
            {"strategy": "full", "rewiring": rewiring, "history": [{"seconds": 100.0}]}))

    write_supernet(str(finetuned))
    run = cmp.load_run(write_run(tmp_path / "r", [[0.5, 0.5], [0.2, 0.8]], times=np.array([1.0, 2.0]),
                                 extra={"checkpoint": str(supernet)}))
    assert (run.training_seconds, run.rewiring_seconds, run.rewiring_source_training_seconds) == (100.0, 7.0, 60.0)
    norm = cmp.make_normalisation([run], ["valid_error", "relative_params"])
    assert cmp.run_trace(run, norm)["seconds"].tolist() == [168.0, 169.0]
    assert cmp.run_trace(run, norm, include_training_time=False)["seconds"].tolist() == [1.0, 2.0]

    # Older checkpoints: the source relative to the folder the command ran in, no rewiring seconds.
    # It is found above the checkpoint wherever compare runs.
    monkeypatch.chdir(tmp_path)
    write_supernet("nasprune-output/supernet/rewiring-finetune/epoch-1", seconds=None)
    assert run.rewiring_source == finetuned and run.seconds_before_search == 160.0
    # ... or, failing that, below the working directory.
    elsewhere = tmp_path / "elsewhere" / "ft" / "epoch-1"
    elsewhere.mkdir(parents=True)
    (elsewhere / "nasprune.json").write_text(json.dumps({"history": [{"seconds": 30.0}]}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    write_supernet("ft/epoch-1", seconds=None)
    assert run.rewiring_source == elsewhere and run.seconds_before_search == 130.0
    # A source that is no nasprune checkpoint (a hub model, a deleted folder) adds nothing.
    write_supernet("bert-base-uncased")
    assert run.rewiring_source is None and run.seconds_before_search == 107.0
    assert cmp.compare([tmp_path / "r"], tmp_path / "cmp").runs.loc[0, "seconds_before_search"] == 107.0


def test_ranks_per_instance_with_ties():
    scores = pd.DataFrame(
        {
            "task": ["t1"] * 3 + ["t1"] * 3 + ["t2"] * 2,
            "seed": [0, 0, 0, 1, 1, 1, 0, 0],
            "method": ["a", "b", "c", "a", "b", "c", "a", "b"],
            "score": [0.9, 0.5, 0.5, 0.1, 0.6, 0.3, 0.4, 0.8],
        }
    )
    ranked = cmp.instance_ranks(scores)
    assert ranked["rank"].tolist() == [1.0, 2.5, 2.5, 3.0, 1.0, 2.0, 2.0, 1.0]
    ranks = cmp.average_ranks(ranked, num_bootstrap=0)
    # a: (1 + 3 + 2) / 3 = 2; b: (2.5 + 1 + 1) / 3 = 1.5; c: (2.5 + 2) / 2 = 2.25.
    assert ranks["method"].tolist() == ["b", "a", "c"]
    assert ranks["mean_rank"].tolist() == pytest.approx([1.5, 2.0, 2.25])
    assert ranks["instances"].tolist() == [3, 3, 2]
    boot = cmp.average_ranks(ranked, num_bootstrap=500, seed=1).set_index("method")
    for method, row in boot.iterrows():
        own = ranked.loc[ranked["method"] == method, "rank"]
        assert own.min() <= row.ci_low <= row.mean_rank <= row.ci_high <= own.max()
    # Seeded: the same intervals twice.
    pd.testing.assert_frame_equal(boot.reset_index(), cmp.average_ranks(ranked, num_bootstrap=500, seed=1))


def test_smallest_size_within_a_share_of_the_unpruned_score(tmp_path):
    runs = [
        cmp.load_run(write_run(tmp_path / "a", [[0.2, 1.0], [0.22, 0.6], [0.3, 0.3]], full_error=0.2)),
        cmp.load_run(write_run(tmp_path / "b", [[0.21, 1.0]], seed=1, full_error=0.22)),
        cmp.load_run(write_run(tmp_path / "c", [[0.2, 1.0]], seed=2, full_error=0.24)),
    ]
    assert cmp.unpruned_error(runs) == pytest.approx(0.22)
    # Score 0.78: 95% of it is 0.741, i.e. an error of at most 0.259; 90%: 0.298.
    assert cmp.smallest_at_level(runs[0], "relative_params", 1 - 0.95 * 0.78) == 0.6
    assert cmp.smallest_at_level(runs[0], "relative_params", 1 - 0.90 * 0.78) == 0.6
    assert cmp.smallest_at_level(runs[0], "relative_params", 0.31) == 0.3
    assert math.isnan(cmp.smallest_at_level(runs[0], "relative_params", 0.1))


def test_latex_tables_with_and_without_jinja2(monkeypatch):
    df = pd.DataFrame({"method": ["ws/nsga2", "a&b"], "hv": [0.12345, np.nan]})
    text = cmp.latex_table(df)
    assert "ws/nsga2" in text and r"a\&b" in text and "0.1235" in text
    monkeypatch.setattr(pd.DataFrame, "to_latex", lambda *a, **k: (_ for _ in ()).throw(ImportError("jinja2")))
    fallback = cmp.latex_table(df, caption="50% of x_y")
    assert r"\begin{tabular}{ll}" in fallback and r"a\&b &  \\" in fallback
    assert r"\caption{50\% of x\_y}" in fallback and fallback.count(r"\\") == 3


# --- the whole comparison --------------------------------------------------------------------
def test_compare_writes_tables_and_plots(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        write_run(root / f"ws-{seed}", [[0.2, 0.8], [0.8, 0.2]], seed=seed)  # hv 0.45 (reference 1.1)
        write_run(root / f"rfp-{seed}", [[0.5, 0.5]], method="rfp", seed=seed, extra={"baseline": {}})  # 0.36
        write_run(root / f"snas-{seed}", [[0.1, 0.9]], method="moasha", seed=seed, extra={"n_workers": 2})  # 0.2
    write_run(root / "other-task", [[0.5, 0.5]], task="mrpc", extra={"baseline": {}}, method="rfp")
    write_run(root / "other-task-ws", [[0.4, 0.5]], task="mrpc")  # 0.42
    write_run(root / "other-task-ws-again", [[0.3, 0.5]], task="mrpc")  # 0.48: same seed, averaged
    write_run(root / "interrupted", [[0.0, 0.0]], task="mrpc", extra={"complete": False})  # left out
    (root / "not-a-run").mkdir()
    result = cmp.compare([root], tmp_path / "out", num_bootstrap=200)

    per_run = result.runs.set_index(["task", "method", "seed"])["hypervolume"]
    assert per_run[("rte", "ws/nsga2", 0)] == pytest.approx(0.45)
    assert per_run[("rte", "baseline/rfp", 1)] == pytest.approx(0.36)
    assert per_run[("rte", "snas/moasha", 0)] == pytest.approx(0.2)
    ranks = result.ranks.set_index("method")
    assert ranks.loc["ws/nsga2", "mean_rank"] == 1.0  # best in all three instances
    assert ranks.loc["baseline/rfp", "mean_rank"] == pytest.approx(2.0)
    assert ranks.loc["snas/moasha", "mean_rank"] == 3.0
    hv = result.hypervolume.set_index("method")
    assert hv.loc["ws/nsga2", "hypervolume rte"] == "0.4500 ± 0.0000"
    assert hv.loc["ws/nsga2", "hypervolume mrpc"] == "0.4500 ± 0.0424"  # 0.42 and 0.48
    assert hv.loc["snas/moasha", "hypervolume mrpc"] == ""

    out = tmp_path / "out"
    for name in ("runs.csv", "hypervolume.md", "hypervolume.tex", "ranks.csv", "ranks.tex", "compression.md",
                 "comparison.json", "ranks.png", "hypervolume_over_time_rte.png", "error_vs_size_rte.png",
                 "test_error_vs_size_mrpc.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "ranks.png").read_bytes()[:4] == b"\x89PNG"
    settings = json.loads((out / "comparison.json").read_text())
    assert settings["normalisation"]["reference_point"] == [1.1, 1.1] and len(settings["runs"]) == 9
    assert str(root / "interrupted") not in settings["runs"]
    compression = result.compression.set_index(["task", "method"])
    # Unpruned error 0.2 (median of full_model): within 90% means error <= 0.28.
    assert compression.loc[("rte", "ws/nsga2"), "relative_params @90%"] == pytest.approx(0.8)
    assert compression.loc[("rte", "baseline/rfp"), "runs @90%"] == "0/2"


def test_compare_rejects_bad_input(tmp_path):
    with pytest.raises(NaspruneError, match="no results"):
        cmp.compare([tmp_path], tmp_path / "out")
    write_run(tmp_path / "r", [[0.5, 0.5]])
    with pytest.raises(NaspruneError, match="objectives"):
        cmp.compare([tmp_path], tmp_path / "out", objectives=["params", "error"])
    with pytest.raises(NaspruneError, match="group-by"):
        cmp.compare([tmp_path], tmp_path / "out", group_by=["colour"])
    with pytest.raises(NaspruneError, match="does not exist"):
        cmp.compare([tmp_path / "missing"], tmp_path / "out")


def test_compare_cli_glue(tmp_path, capsys):
    import argparse

    from nasprune.cli import compare as compare_cli

    write_run(tmp_path / "runs" / "a", [[0.3, 0.4]])
    parser = argparse.ArgumentParser()
    compare_cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "runs"), "--output-dir", str(tmp_path / "out"), "--bootstrap", "10",
                              "--group-by", "method,search_space"])
    result = compare_cli.run_from_args(args)
    assert result.ranks["method"].tolist() == ["nsga2/small"]
    assert "hypervolume" in capsys.readouterr().out


# --- the experiment grid ---------------------------------------------------------------------
def _grid_module():
    spec = importlib.util.spec_from_file_location("nasprune_experiment_grid", REPO / "experiments" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_grid_skips_finished_runs_and_resumes(tmp_path, monkeypatch):
    grid = _grid_module()
    config_path = tmp_path / "grid.json"
    config_path.write_text(json.dumps({
        "output_dir": str(tmp_path / "out"), "seeds": [0, 1], "methods": ["random_search", "nsga2"],
        "baselines": ["rfp"], "training": {"epochs": 1}, "finetune": {"epochs": 1},
    }))
    config = grid.load_config(config_path)
    names = [job.name for job in grid.build_jobs(config)]
    assert names[:3] == ["rotten_tomatoes/seed-0/finetune", "rotten_tomatoes/seed-0/baseline/rfp",
                         "rotten_tomatoes/seed-0/supernet-small-full"]
    assert len(names) == 10  # per seed: finetune, rfp, super-network, two searches

    calls: list[str] = []

    def fake_train(model, data_options, training, space, folder, **kwargs):
        calls.append(f"train {Path(folder).name} {training.strategy} seed={training.seed}")
        checkpoint = Path(folder) / f"epoch-{training.epochs}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "nasprune.json").write_text(json.dumps({"epoch": training.epochs}))
        return checkpoint

    def fake_results(name):
        def run(checkpoint, options, folder, *args, **kwargs):
            calls.append(f"{name} {options.method} seed={options.seed}")
            if options.method == "nsga2" and options.seed == 1:
                raise RuntimeError("interrupted")
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "summary.json").write_text("{}")
        return run

    import nasprune.baselines
    import nasprune.checkpoint
    import nasprune.workflows

    monkeypatch.setattr(nasprune.workflows, "train_supernet", fake_train)
    monkeypatch.setattr(nasprune.workflows, "search", fake_results("search"))
    monkeypatch.setattr(nasprune.baselines, "run_baseline", fake_results("baseline"))
    monkeypatch.setattr(nasprune.checkpoint.CheckpointInfo, "load", classmethod(
        lambda cls, path: type("Info", (), json.loads((Path(path) / "nasprune.json").read_text()))))
    monkeypatch.setattr(nasprune.checkpoint, "resolve_checkpoint", lambda path: Path(path))

    status = grid.run_grid(config)
    assert status["rotten_tomatoes/seed-1/ws-small-full/nsga2"].startswith("failed: RuntimeError")
    assert sum(s.startswith("done") for s in status.values()) == 9
    assert "train finetune standard seed=0" in calls and "baseline rfp seed=1" in calls
    assert json.loads((tmp_path / "out" / "grid_status.json").read_text()) == status

    # Run again: only the failed search runs; everything finished is skipped.
    calls.clear()
    status = grid.run_grid(config)
    assert calls == ["search nsga2 seed=1"]
    assert sum(s.startswith("skipped") for s in status.values()) == 9
    dry = grid.run_grid(config, dry_run=True)
    assert [name for name, state in dry.items() if state == "to run"] == ["rotten_tomatoes/seed-1/ws-small-full/nsga2"]


def test_grid_can_share_checkpoints_across_seeds(tmp_path):
    grid = _grid_module()
    config = {**grid.DEFAULTS, "output_dir": str(tmp_path), "seeds": [3, 4], "baselines": ["rfp"],
              "share_checkpoints": True}
    names = [job.name for job in grid.build_jobs(config)]
    assert names == [
        "rotten_tomatoes/shared-seed-3/finetune", "rotten_tomatoes/seed-3/baseline/rfp",
        "rotten_tomatoes/shared-seed-3/supernet-small-full", "rotten_tomatoes/seed-3/ws-small-full/random_search",
        "rotten_tomatoes/seed-4/baseline/rfp", "rotten_tomatoes/seed-4/ws-small-full/random_search",
    ]


def test_grid_without_methods_trains_no_supernetwork(tmp_path):
    grid = _grid_module()
    config = {**grid.DEFAULTS, "output_dir": str(tmp_path), "methods": [], "baselines": ["layer-drop"]}
    assert [job.name for job in grid.build_jobs(config)] == [
        "rotten_tomatoes/seed-0/finetune", "rotten_tomatoes/seed-0/baseline/layer-drop"]


def test_grid_reads_yaml_json_and_python_configs(tmp_path):
    grid = _grid_module()
    (tmp_path / "g.py").write_text("CONFIG = {'seeds': [3], 'methods': 'nsga2'}\n")
    assert grid.load_config(tmp_path / "g.py")["methods"] == ["nsga2"]
    (tmp_path / "g.json").write_text(json.dumps({"tasks": ["rte"]}))
    assert grid.load_config(tmp_path / "g.json")["tasks"] == ["rte"]
    if importlib.util.find_spec("yaml") is not None:  # pyyaml comes with datasets, but is optional here
        example = grid.load_config(REPO / "experiments" / "grid_example.yaml")
        assert "nsga2" in example["methods"] and example["seeds"] == [0, 1, 2]
    (tmp_path / "bad.json").write_text(json.dumps({"colour": 1}))
    with pytest.raises(SystemExit, match="unknown config keys"):
        grid.load_config(tmp_path / "bad.json")


def test_grid_rewired_supernets_measure_importance_on_the_finetuned_checkpoint(tmp_path, monkeypatch):
    grid = _grid_module()
    config = {**grid.DEFAULTS, "output_dir": str(tmp_path), "methods": ["nsga2"], "rewire": [False, True],
              "rewiring": {"num_examples": 64, "importance": "gradient"}}
    jobs = {job.name: job for job in grid.build_jobs(config)}
    assert list(jobs) == ["rotten_tomatoes/seed-0/finetune", "rotten_tomatoes/seed-0/supernet-small-full",
                          "rotten_tomatoes/seed-0/ws-small-full/nsga2", "rotten_tomatoes/seed-0/supernet-small-full-rewired",
                          "rotten_tomatoes/seed-0/ws-small-full-rewired/nsga2"]
    seen = {}

    def fake_train(model, data_options, training, space, folder, rewiring=None, **kwargs):
        seen[Path(folder).name] = rewiring

    import nasprune.workflows

    monkeypatch.setattr(nasprune.workflows, "train_supernet", fake_train)
    for name in ("supernet-small-full", "supernet-small-full-rewired"):
        jobs[f"rotten_tomatoes/seed-0/{name}"].run()
    assert seen["supernet-small-full"] is None
    rewiring = seen["supernet-small-full-rewired"]
    assert rewiring.source == str(tmp_path / "rotten_tomatoes" / "seed-0" / "finetune")
    assert (rewiring.importance, rewiring.num_examples) == ("gradient", 64)


def test_runs_on_different_data_splits_are_different_instances():
    from nasprune.report import average_ranks, instance_ranks

    # Method a wins on split 0, b on split 1, each with training seed 0: two instances, one win each.
    scores = pd.DataFrame(
        {"task": ["t"] * 4, "data_seed": [0, 0, 1, 1], "seed": [0] * 4,
         "method": ["a", "b", "a", "b"], "score": [0.5, 0.4, 0.3, 0.6]}
    )
    ranked = instance_ranks(scores)
    assert ranked["rank"].tolist() == [1.0, 2.0, 2.0, 1.0]
    table = average_ranks(ranked, num_bootstrap=0)
    assert table["mean_rank"].tolist() == [1.5, 1.5] and table["instances"].tolist() == [2, 2]
