"""Standard NAS on Syne Tune: the worker, the schedulers, real Tuner runs on a tiny BERT, and our
searchers under asynchrony (pending trials, results out of order, failed and stopped trials)."""

from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend import LocalBackend
from syne_tune.backend.trial_status import Status
from syne_tune.config_space import randint
from syne_tune.experiments import load_experiment
from syne_tune.optimizer.schedulers.asha import Bracket
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler
from syne_tune.report import retrieve

from conftest import write_tiny_bert
from nasprune import analysis
from nasprune.cli.nas import add_arguments, run_from_args
from nasprune.errors import NaspruneError
from nasprune.search import NSGA2, LocalSearch
from nasprune.search.registry import METHODS
from nasprune.spaces import get_search_space
from nasprune.snas import (
    ParetoRankPriority,
    SeededMOASHA,
    TrialLimit,
    make_standard_nas_scheduler,
    run_standard_nas,
    worker,
)
from nasprune.subnet import ModelShape
from nasprune.analysis import HYPERVOLUME_DEFINITION, REFERENCE_POINT
from nasprune.data import DataOptions
from test_cli import _write_data

METRICS = ["valid_error", "relative_params"]
# Fast enough for the tiny model to learn within 3 epochs, so errors differ between epochs.
TRAINING = dict(learning_rate=5e-3, batch_size=8, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("snas")
    # The same model in every test session: trials learn the same way.
    write_tiny_bert(root / "model", num_layers=2, initializer_range=0.02)
    for split, n, seed in (("train", 96, 0), ("valid", 40, 1), ("test", 40, 2)):
        _write_data(root / f"{split}.csv", n, seed)
    return root


def _data_options(root) -> DataOptions:
    return DataOptions(
        train_file=str(root / "train.csv"),
        validation_file=str(root / "valid.csv"),
        test_file=str(root / "test.csv"),
        text_column="sentence",
        label_column="sentiment",
        max_seq_length=16,
    )


def _worker_args(root, *extra):
    data = _data_options(root)
    return [
        "--model", str(root / "model"), "--train_file", data.train_file,
        "--validation_file", data.validation_file, "--test_file", data.test_file,
        "--text_column", "sentence", "--label_column", "sentiment", "--max_seq_length", "16",
        "--learning_rate", "5e-3", "--batch_size", "8", "--warmup_ratio", "0", "--num_threads", "1",
        *map(str, extra),
    ]


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- the worker ---------------------------------------------------------------------------
def test_worker_resumes_from_its_checkpoint(workspace, tmp_path, capsys, keep_torch_threads):
    checkpoint = tmp_path / "checkpoint"
    args = _worker_args(
        workspace, "--search_space", "small", "--num_layers", 2, "--num_heads", 3, "--num_units", 40,
        "--st_checkpoint_dir", checkpoint,
    )
    assert worker.main([*args, "--epochs", "1"]) == 0
    first = retrieve(capsys.readouterr().out.splitlines())
    assert [r["epoch"] for r in first] == [1]
    assert (checkpoint / worker.TrialCheckpoint.POINTER).is_file()
    report = first[0]
    assert 0 < report["relative_params"] < 1 and 0 <= report["valid_error"] <= 1
    assert {"test_error", "params", "macs", "relative_macs", "elapsed_seconds"} <= set(report)

    assert worker.main([*args, "--epochs", "2"]) == 0
    second = retrieve(capsys.readouterr().out.splitlines())
    assert [r["epoch"] for r in second] == [2]  # epoch 1 is not trained again
    assert second[0]["params"] == report["params"]
    assert second[0]["elapsed_seconds"] > report["elapsed_seconds"]  # time adds up over resumptions
    # Only the last epoch is kept, as safetensors and JSON.
    assert sorted(p.name for p in checkpoint.iterdir()) == ["epoch-2", "latest.json"]
    progress = json.loads((checkpoint / "epoch-2" / worker.TrialCheckpoint.PROGRESS).read_text())
    assert progress["epoch"] == 2 and [r["epoch"] for r in progress["reports"]] == [1, 2]
    assert sorted(p.name for p in (checkpoint / "epoch-2").iterdir()) == [
        "model.safetensors", "training_state.json", "training_state.safetensors", "trial.json"
    ]


def test_worker_reads_a_json_config_and_refuses_unknown_variables(workspace, tmp_path, capsys, keep_torch_threads):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"search_space": "layer", "layer_0": 1, "layer_1": 0, "epochs": 1}))
    assert worker.main([*_worker_args(workspace), "--st_config_json_filename", str(config)]) == 0
    (report,) = retrieve(capsys.readouterr().out.splitlines())
    assert report["epoch"] == 1 and report["relative_macs"] == pytest.approx(0.5)

    code = worker.main(_worker_args(workspace, "--search_space", "small", "--num_layers", 1, "--bogus", 2))
    assert code == 2
    assert "bogus" in capsys.readouterr().err


def test_worker_measures_latency_once_when_asked(workspace, capsys, keep_torch_threads):
    args = _worker_args(workspace, "--search_space", "layer", "--layer_0", 1, "--layer_1", 0, "--epochs", 2,
                        "--measure_latency", 1, "--latency_batch_size", 2, "--latency_seq_length", 8)
    assert worker.main(args) == 0
    reports = retrieve(capsys.readouterr().out.splitlines())
    assert [r["epoch"] for r in reports] == [1, 2]
    assert reports[0]["latency_seconds"] > 0 and reports[0]["relative_latency"] > 0
    # Timed once, before training: every epoch reports the same measurement.
    assert reports[1]["latency_seconds"] == reports[0]["latency_seconds"]
    assert worker.main(_worker_args(workspace, "--search_space", "layer", "--layer_0", 1, "--layer_1", 1, "--epochs", 1)) == 0
    assert "relative_latency" not in retrieve(capsys.readouterr().out.splitlines())[0]


# --- schedulers ---------------------------------------------------------------------------
def test_pareto_rank_priority_ranks_the_new_result_itself():
    # The new result (last row) is third of four: MO-ASHA with reduction factor 3 must stop it.
    # Syne Tune's NonDominatedPriority returns the sort order instead, and this trial continues.
    recorded = {0: {"e": 0.9, "s": 0.9}, 1: {"e": 0.1, "s": 0.1}, 2: {"e": 0.2, "s": 0.2}}
    bracket = Bracket(1, 3, 3, 0, ParetoRankPriority())
    bracket.rungs[-1][1].update(recorded)
    assert bracket.on_result(3, 1, {"e": 0.5, "s": 0.5}) == "STOP"
    bracket = Bracket(1, 3, 3, 0, ParetoRankPriority())
    bracket.rungs[-1][1].update(recorded)
    assert bracket.on_result(3, 1, {"e": 0.05, "s": 0.05}) == "CONTINUE"


def test_moasha_starts_from_the_initial_design_and_honours_its_seed():
    space = get_search_space("small", ModelShape(2, 4, 8, 32, 64))
    config_space = {**space.config_space, "epochs": 3, "model": "m"}
    design = space.initial_design()

    def suggestions(seed):
        scheduler = SeededMOASHA(config_space, METRICS, max_t=3, points_to_evaluate=design, random_seed=seed)
        return [scheduler.suggest().config for _ in range(8)]

    first = suggestions(0)
    assert [{k: c[k] for k in space.variable_names} for c in first[:3]] == design
    assert all(c["epochs"] == 3 and c["model"] == "m" for c in first)
    assert first == suggestions(0) and first[3:] != suggestions(1)[3:]


def test_moasha_does_not_fine_tune_the_same_subnetwork_twice():
    # In the small space every config with num_layers=0 is the same (empty) sub-network.
    space = get_search_space("small", ModelShape(2, 4, 8, 32, 64))
    scheduler = make_standard_nas_scheduler(
        "moasha", space.config_space, METRICS, 3, space.initial_design(), random_seed=0, space=space
    )
    subnets = [space.to_subnet(scheduler.suggest().config) for _ in range(30)]
    assert len(set(subnets)) == len(subnets)


@pytest.mark.parametrize("method", ["moasha", *[m for m in METHODS if m != "ehvi"]])
def test_every_method_passes_the_fixed_hyperparameters(method):
    space = get_search_space("medium", ModelShape(2, 4, 8, 32, 64))
    fixed = {"epochs": 2, "model": "/models/tiny", "learning_rate": 1e-3}
    design = [{**p, **fixed} for p in space.initial_design()]
    scheduler = make_standard_nas_scheduler(method, {**space.config_space, **fixed}, METRICS, 2, design, 0)
    configs = [scheduler.suggest().config for _ in range(5)]
    assert [{k: c[k] for k in space.variable_names} for c in configs[:3]] == space.initial_design()
    for config in configs:
        assert {k: config[k] for k in fixed} == fixed
        space.to_subnet(config)  # inside the space


# --- budgets and the command line -----------------------------------------------------------
@pytest.mark.parametrize(
    "budget, message",
    [
        (dict(max_trials=0), "--max-trials"),
        (dict(max_wallclock_time=-5), "--max-wallclock-time"),
        (dict(max_wallclock_time=0), "--max-wallclock-time"),
        (dict(), "budget"),
        (dict(max_trials=3, epochs=0), "--epochs"),
        (dict(max_trials=3, n_workers=0), "--n-workers"),
        (dict(max_trials=3, method="hyperband"), "moasha"),
        (dict(max_trials=3, objectives=("params", "error")), "--objectives"),
        (dict(max_trials=3, search_space="huge"), "search space"),
        (dict(max_trials=3, objectives=("error", "latency"), latency_batch_size=0), "--latency-batch-size"),
    ],
)
def test_impossible_budgets_and_bad_names_raise(workspace, tmp_path, budget, message):
    with pytest.raises(NaspruneError, match=message):
        run_standard_nas(str(workspace / "model"), _data_options(workspace), tmp_path, **budget)


def test_command_line_takes_exactly_one_budget(workspace, tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers().add_parser("nas"))
    base = ["nas", "--model", str(workspace / "model"), "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        parser.parse_args(base)  # no budget
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--max-trials", "2", "--max-wallclock-time", "60"])
    args = parser.parse_args([*base, "--max-trials", "0", "--method", "nsga2"])
    assert args.n_workers is None and args.epochs == 3 and args.max_seq_length == 128  # None: 2 locally
    with pytest.raises(NaspruneError, match="--max-trials"):
        run_from_args(args)


@pytest.mark.parametrize(
    "script, budget, message",
    [
        ("import sys; sys.exit('boom: out of memory')", dict(max_trials=4), "boom: out of memory"),
        ("import time; time.sleep(60)", dict(max_wallclock_time=2), "no trial finished an epoch"),
    ],
)
def test_failing_or_too_slow_trials_raise(workspace, tmp_path, monkeypatch, script, budget, message):
    fake_worker = tmp_path / "fake_worker.py"
    fake_worker.write_text(script)
    monkeypatch.setattr("nasprune.snas.launch.WORKER_SCRIPT", fake_worker)
    with pytest.raises(NaspruneError, match=message):
        run_standard_nas(
            str(workspace / "model"), _data_options(workspace), tmp_path / "out", n_workers=2,
            max_failures=1, sleep_time=0.2, **budget,
        )


# --- real Tuner runs on the tiny BERT -------------------------------------------------------
def _check_against_syne_tune(result, epochs):
    """The table holds one row per reporting trial, at its best epoch, as Syne Tune recorded it."""
    syne_tune = result.summary["syne_tune"]
    reports = load_experiment(syne_tune["tuner_name"], local_path=str(result.output_dir / "syne-tune")).results
    assert len(reports) == len(result.syne_tune_results)
    table = pd.read_csv(result.output_dir / "results.csv")
    assert sorted(table["trial_id"]) == sorted(reports["trial_id"].unique())
    for trial_id, group in reports.groupby("trial_id"):
        assert list(group["epoch"]) == list(range(1, len(group) + 1)), "one report per epoch, in order"
        row = table.set_index("trial_id").loc[trial_id]
        best = group.loc[group["valid_error"].idxmin()]
        assert row["valid_error"] == pytest.approx(best["valid_error"])
        assert row["test_error"] == pytest.approx(best["test_error"])
        assert row["best_epoch"] == best["epoch"] and row["epochs"] == len(group) <= epochs
        for name in ("num_layers", "num_heads", "num_units"):
            assert row[f"config_{name}"] == group[f"config_{name}"].iloc[0]
    assert table["pareto"].tolist() == analysis.pareto_mask(table[METRICS].to_numpy()).tolist()
    summary = result.summary
    hypervolume = analysis.hypervolume(table[METRICS].to_numpy(), [REFERENCE_POINT] * 2)
    assert summary["hypervolume"] == pytest.approx(hypervolume) and summary["reference_point"] == [REFERENCE_POINT] * 2
    assert summary["hypervolume_definition"] == HYPERVOLUME_DEFINITION
    assert len(summary["pareto_set"]) == table["pareto"].sum()
    trace = pd.read_csv(result.output_dir / "hypervolume_over_time.csv")
    assert len(trace) == len(reports) and trace["hypervolume"].is_monotonic_increasing
    assert trace["hypervolume"].iloc[-1] == pytest.approx(hypervolume)
    for name in ("pareto.png", "hypervolume_over_time.png"):
        assert (result.output_dir / name).stat().st_size > 1000
    assert "valid_error" in (result.output_dir / "pareto.md").read_text()
    return table, reports


def test_moasha_reports_every_epoch_and_stops_weak_trials_early(workspace, tmp_path):
    # After one epoch no candidate has learnt yet (all at the majority-class error), so the rung
    # ranks them by size. Six trials make an early stop certain for any order of arrival that
    # two workers allow: the smallest network arrives first or second, and the three random
    # candidates are all larger than the midpoint.
    result = run_standard_nas(
        str(workspace / "model"), _data_options(workspace), tmp_path, method="moasha", n_workers=2,
        max_trials=6, epochs=3, sleep_time=0.3, **TRAINING,
    )
    table, reports = _check_against_syne_tune(result, epochs=3)
    assert len(table) == 6  # exactly the trial budget, every trial got to report
    assert reports.loc[reports["epoch"] == 1, "valid_error"].nunique() == 1  # see above
    space = get_search_space("small", ModelShape(2, 4, 8, 32, 64))
    started = table.sort_values("trial_id")
    for design, row in zip(space.initial_design(), started.itertuples()):
        assert {k: getattr(row, f"config_{k}") for k in design} == design
    stopped = table[table["epochs"] < 3]
    assert len(stopped) > 0 and (stopped["status"] == "stopped_early").all()
    assert (table.loc[table["epochs"] == 3, "status"] == "completed").all()
    assert result.summary["method"] == "moasha" and result.summary["num_evaluated"] == 6


def test_nsga2_trains_every_trial_for_all_epochs(workspace, tmp_path):
    result = run_standard_nas(
        str(workspace / "model"), _data_options(workspace), tmp_path, method="nsga2", n_workers=2,
        max_trials=4, epochs=3, sleep_time=0.3, **TRAINING,
    )
    table, reports = _check_against_syne_tune(result, epochs=3)
    assert len(table) == 4 and (table["epochs"] == 3).all() and (table["status"] == "completed").all()
    full = result.summary["full_model"]
    assert full["relative_params"] == 1.0 and full["valid_error"] < 0.5  # the full model learnt
    searcher = result.tuner.scheduler.scheduler.searcher
    assert searcher.num_completed == 4 and searcher.num_pending == 0


def test_latency_is_an_objective_of_standard_nas(workspace, tmp_path):
    result = run_standard_nas(
        str(workspace / "model"), _data_options(workspace), tmp_path, method="random_search", n_workers=2,
        max_trials=3, epochs=1, sleep_time=0.3, objectives=("error", "latency", "params"),
        latency_seq_length=8, **TRAINING,
    )
    metrics = ["valid_error", "relative_latency", "relative_params"]
    assert result.summary["objectives"] == metrics
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 3 and (table["relative_latency"] > 0).all() and (table["latency_seconds"] > 0).all()
    assert table["pareto"].tolist() == analysis.pareto_mask(table[metrics].to_numpy()).tolist()
    assert result.summary["hypervolume"] == pytest.approx(analysis.hypervolume(table[metrics].to_numpy(), [REFERENCE_POINT] * 3))
    assert all("relative_latency" in point for point in result.summary["pareto_set"])


# --- our searchers in a plain Tuner, under asynchrony -----------------------------------------
TOY_SCRIPT = """
    import argparse, pathlib, sys, time
    from syne_tune import Reporter

    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=int)
    parser.add_argument("--y", type=int)
    parser.add_argument("--st_checkpoint_dir")
    args, _ = parser.parse_known_args()
    x, y = args.x, args.y
    time.sleep(2.0 if x == 9 else 0.2 * (y % 3))  # unequal durations: results come out of order
    if (3 * x + y) % 7 == 0:
        sys.exit(1)  # a failed trial
    if (3 * x + y) % 7 == 1:
        # a trial stopped from outside the tuner (LocalBackend reads the 'stop' file)
        trial_dir = pathlib.Path(args.st_checkpoint_dir).parent
        (trial_dir / "stop").touch()
        sys.exit(0)
    Reporter()(error=((x - 3) ** 2 + (y - 6) ** 2) / 100, size=(x + y) / 18)
"""


@pytest.mark.parametrize("searcher_class", [NSGA2, LocalSearch])
def test_our_searchers_stay_consistent_under_asynchrony(searcher_class, tmp_path, monkeypatch):
    script = tmp_path / "toy.py"
    script.write_text(textwrap.dedent(TOY_SCRIPT))
    config_space = {"x": randint(0, 9), "y": randint(0, 9)}
    # slow first trial, a failing one, one that is stopped from outside, a plain one
    design = [{"x": 9, "y": 5}, {"x": 0, "y": 0}, {"x": 0, "y": 1}, {"x": 1, "y": 1}]
    options = {"population_size": 4} if searcher_class is NSGA2 else {}
    searcher = searcher_class(config_space, points_to_evaluate=design, random_seed=0, **options)
    scheduler = SingleFidelityScheduler(
        config_space, metrics=["error", "size"], do_minimize=True, searcher=searcher, random_seed=0
    )
    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path / "syne-tune"))
    tuner = Tuner(
        trial_backend=LocalBackend(entry_point=str(script), rotate_gpus=False),
        scheduler=TrialLimit(scheduler, 14),  # runs dry, so every started trial finishes
        stop_criterion=StoppingCriterion(max_wallclock_time=120),
        n_workers=3,
        sleep_time=0.2,
        max_failures=100,
        save_tuner=False,
    )
    tuner.run()

    statuses = tuner.tuning_status.last_trial_status_seen
    configs = {t: tuner.trial_backend._trial_dict[t].config for t in statuses}
    assert len(statuses) == 14
    assert {Status.completed, Status.failed, Status.stopped} <= set(statuses.values())
    results = tuner.callbacks[0].dataframe()
    first_report = results.groupby("trial_id")["st_tuner_time"].min()
    assert not first_report.is_monotonic_increasing, "results should arrive out of order"

    completed = [t for t, s in statuses.items() if s == Status.completed]
    keys = {t: searcher.encoder.key(searcher.encoder.encode(configs[t])) for t in statuses}
    assert searcher.num_completed == len(completed)
    assert searcher._evaluated == {keys[t] for t in completed}
    assert searcher.num_pending == 0  # failed and stopped trials were forgotten
    assert len({keys[t] for t in completed}) == len(completed), "no config was evaluated twice"

    metrics = results.groupby("trial_id")[["error", "size"]].last()
    if searcher_class is NSGA2:
        assert 0 < len(searcher.population) <= 4
        by_key = {keys[t]: t for t in completed}
        for member in searcher.population:
            assert np.allclose(member.f, metrics.loc[by_key[member.key]].to_numpy())
    else:
        points = metrics.loc[completed].to_numpy()
        front = {tuple(p) for p in points[analysis.pareto_mask(points)]}
        assert {tuple(f) for f in searcher.archive.costs} == front
