"""Multi-fidelity weight-sharing search: MO-ASHA over nested validation subsets (issue 13)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_sentiment_csv, write_tiny_bert
from nasprune import analysis
from nasprune.cli.flags import fraction
from nasprune.data import DataOptions
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.report.runs import load_run
from nasprune.results import JOURNAL_FILE
from nasprune.search import make_scheduler
from nasprune.search.local_search import LocalSearch
from nasprune.search.multifidelity import fidelity_levels, nested_subsets, pareto_ranks, run_multi_fidelity
from nasprune.spaces import get_search_space
from nasprune.subnet import ModelShape
from nasprune.training import TrainingConfig
from nasprune.workflows import SearchOptions, search, train_supernet

SHAPE = ModelShape(num_layers=4, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=64)
METRICS = ["error", "size"]
LEVELS = [1 / 9, 1 / 3, 1.0]


# --- fidelities and subsets -------------------------------------------------------------------
def test_fidelity_levels():
    assert fidelity_levels() == LEVELS
    assert fidelity_levels(0.1, 3) == LEVELS  # rounded up to a power of the factor
    assert fidelity_levels(1 / 27, 3) == [1 / 27, 1 / 9, 1 / 3, 1.0]
    assert fidelity_levels(0.25, 2) == [0.25, 0.5, 1.0]
    assert fidelity_levels(1.0) == [1.0]
    for bad in (dict(min_fidelity=0.0), dict(min_fidelity=1.5), dict(reduction_factor=1.0)):
        with pytest.raises(NaspruneError):
            fidelity_levels(**bad)


def test_subsets_are_nested_seeded_and_sized():
    subsets = nested_subsets(100, LEVELS, seed=0)
    assert set(subsets) == set(LEVELS[:-1])  # the full split needs no subset
    small, medium = subsets[1 / 9], subsets[1 / 3]
    assert (len(small), len(medium)) == (12, 34)
    assert set(small) <= set(medium)
    assert np.array_equal(small, np.sort(small)) and len(set(medium)) == len(medium)
    again, other = nested_subsets(100, LEVELS, seed=0), nested_subsets(100, LEVELS, seed=1)
    assert all(np.array_equal(subsets[f], again[f]) for f in subsets)
    assert not np.array_equal(subsets[1 / 3], other[1 / 3])
    assert len(nested_subsets(3, LEVELS, seed=0)[1 / 9]) == 1  # at least one example


def test_min_fidelity_flag_takes_fractions():
    assert fraction("1/9") == 1 / 9 and fraction("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError):
        fraction("a third")


# --- the scheduler and the loop ------------------------------------------------------------
def toy_evaluate(space, calls=None):
    """Error falls with kept capacity; a lower fidelity sees it through noise, as a subset does."""

    def evaluate(config, fidelity):
        if calls is not None:
            calls.append((tuple(sorted(config.items())), fidelity))
        subnet = space.to_subnet(config)
        kept = (subnet.heads_per_layer.sum() / SHAPE.num_heads + subnet.units_per_layer.sum() / SHAPE.intermediate_size)
        size = kept / (2 * SHAPE.num_layers)
        noise = np.random.default_rng(abs(hash((size, fidelity))) % 2**32).normal(0, 0.1 * (1 - fidelity))
        return {"error": float(np.clip(1 - np.sqrt(size) + noise, 0, 1)), "size": float(size)}

    return evaluate


def moasha_records(method="moasha", num_samples=40, seed=0, calls=None):
    space = get_search_space("medium", SHAPE)
    scheduler = make_scheduler(
        method, space.config_space, METRICS, space.initial_design(), seed, fidelities=LEVELS,
        config_key=space.to_subnet,
    )
    records = run_multi_fidelity(scheduler, toy_evaluate(space, calls), LEVELS, num_samples, progress=False)
    return space, scheduler, records


def test_moasha_promotes_by_rung():
    space, _, records = moasha_records()
    by_trial: dict[int, list[dict]] = {}
    for record in records:
        by_trial.setdefault(record["trial_id"], []).append(record)
    assert len(by_trial) == 40
    assert [r["config"] for r in records if r["fidelity"] == LEVELS[0]][:3] == space.initial_design()
    # Every trial climbs the rungs in order, one evaluation per rung, and goes on only if promoted.
    for evaluations in by_trial.values():
        assert [r["fidelity"] for r in evaluations] == LEVELS[: len(evaluations)]
        assert [r["promoted"] for r in evaluations[:-1]] == [True] * (len(evaluations) - 1)
        assert not evaluations[-1]["promoted"]
    # The rule at each rung: promoted iff the new result ranks in the best third of the results
    # the rung holds when it arrives (the Pareto ranks of the scheduler), in arrival order.
    for rung in LEVELS[:-1]:
        arrived = [r for r in records if r["fidelity"] == rung]
        for n, record in enumerate(arrived):
            points = np.array([[r["metrics"]["error"], r["metrics"]["size"]] for r in arrived[: n + 1]])
            ranks = pareto_ranks(points)
            position = np.searchsorted(np.sort(ranks), ranks[-1]) / len(ranks)
            assert record["promoted"] == bool(n == 0 or position <= 1 / 3)
    reached = [sum(1 for t in by_trial.values() if len(t) > k) for k in range(3)]
    assert reached[0] == 40 and reached[0] > reached[1] > reached[2] > 0  # fewer at each rung


def test_moasha_is_seeded():
    first = [r["config"] for r in moasha_records(seed=0)[2]]
    assert first == [r["config"] for r in moasha_records(seed=0)[2]]
    assert first != [r["config"] for r in moasha_records(seed=1)[2]]


def test_multi_fidelity_in_front_of_a_searcher():
    space, scheduler, records = moasha_records("local_search", num_samples=30)
    assert isinstance(scheduler.searcher, LocalSearch)
    trials = sorted({r["trial_id"] for r in records})
    assert trials == list(range(30))
    assert [r["config"] for r in records if r["fidelity"] == LEVELS[0]][:3] == space.initial_design()
    # The searcher learnt every trial, stopped or not: nothing pending, no config twice.
    assert scheduler.searcher.num_completed == 30 and scheduler.searcher.num_pending == 0
    configs = [tuple(sorted(r["config"].items())) for r in records if r["fidelity"] == LEVELS[0]]
    assert len(set(configs)) == len(configs)
    assert any(len([r for r in records if r["trial_id"] == t]) < 3 for t in trials)  # some stopped early


def test_a_config_seen_before_is_not_evaluated_again_at_the_same_fidelity():
    calls = []
    moasha_records(num_samples=25, calls=calls)
    assert len(calls) == len(set(calls))


# --- the weight-sharing search -----------------------------------------------------------------
def _data(root: Path) -> DataOptions:
    root = root / "supernet" / "data"  # inside the training folder, where a search may follow them
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 32, 0), ("valid", 36, 1), ("test", 16, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    return DataOptions(
        train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"), test_file=str(root / "test.csv"),
        text_column="text", label_column="label", max_seq_length=16,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("moasha")
    write_tiny_bert(root / "model", num_layers=2)
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3, seed=0, strategy="sandwich")
    return train_supernet(str(root / "model"), _data(root), config, "medium", root / "supernet", progress=False)


def _search(checkpoint, out, **options):
    settings = {"method": "moasha", "num_samples": 12, "search_space": "medium", **options}
    return search(checkpoint, SearchOptions(**settings), out, progress=False)


def test_low_fidelity_results_never_reach_the_front(checkpoint, tmp_path, monkeypatch):
    # Make every subset evaluation look perfect: were low-fidelity rows compared with full ones,
    # they would dominate the whole front.
    original = SubnetEvaluator.error
    monkeypatch.setattr(SubnetEvaluator, "error", lambda self, s: 0.0 if self.fidelity < 1 else original(self, s))
    result = _search(checkpoint, tmp_path / "out")
    table, summary = result.table, result.summary
    assert set(table["fidelity"]) == set(LEVELS)
    low = table["fidelity"] < 1
    assert (table.loc[low, "valid_error"] == 0).all()
    assert not table.loc[low, "pareto"].any() and table.loc[low, "test_error"].isna().all()
    full = table[~low]
    metrics = ["valid_error", "relative_macs"]
    assert table["pareto"].sum() == analysis.pareto_mask(full[metrics].to_numpy(dtype=float)).sum() > 0
    assert full.loc[full["pareto"], "test_error"].notna().all()
    assert summary["hypervolume"] == pytest.approx(
        analysis.hypervolume(full[metrics].to_numpy(dtype=float), summary["reference_point"])
    )
    assert summary["evaluations"] == len(table) and summary["full_fidelity_trials"] == len(full)
    assert len(load_run(tmp_path / "out").table) == len(full)  # `compare` sees full-fidelity rows only


class _CountEvaluations:
    """Counts the validation passes of a search, by fidelity (the evaluators with a journal)."""

    def __init__(self, monkeypatch):
        self.calls: list[float] = []
        original = SubnetEvaluator.predict

        def predict(evaluator, subnet):
            if evaluator._journal is not None:
                self.calls.append(evaluator.fidelity)
            return original(evaluator, subnet)

        monkeypatch.setattr(SubnetEvaluator, "predict", predict)


def test_moasha_resumes_from_its_journal(checkpoint, tmp_path, monkeypatch):
    counter = _CountEvaluations(monkeypatch)
    out = tmp_path / "out"
    short = _search(checkpoint, out, num_samples=5)
    journal = [json.loads(line) for line in (out / JOURNAL_FILE).read_text().splitlines()[1:]]
    assert {line.get("fidelity", 1.0) for line in journal} == set(LEVELS)
    assert "fidelity_subsets" in json.loads((out / JOURNAL_FILE).read_text().splitlines()[0])
    first_calls = len(counter.calls)
    assert first_calls == len(journal)  # every measurement is journalled (the full model's too)

    # The same search again: everything comes from the journal.
    again = _search(checkpoint, out, num_samples=5)
    assert len(counter.calls) == first_calls
    assert again.table.drop(columns="elapsed_seconds").equals(short.table.drop(columns="elapsed_seconds"))

    # A longer run of the same search replays the first trials from the journal, evaluating only new ones.
    longer = _search(checkpoint, out, num_samples=12)
    fresh = len(counter.calls) - first_calls
    shared = longer.table[longer.table["trial_id"] < 5].drop(columns=["elapsed_seconds", "pareto", "test_error"])
    assert shared.equals(short.table.drop(columns=["elapsed_seconds", "pareto", "test_error"]))
    assert fresh == len(longer.table[longer.table["trial_id"] >= 5].drop_duplicates(["subnet", "fidelity"]))


def test_multi_fidelity_option_labels_the_method(checkpoint, tmp_path):
    result = _search(checkpoint, tmp_path / "out", method="nsga2", multi_fidelity=True, num_samples=8)
    assert result.summary["method"] == "nsga2+moasha"
    assert set(result.table["fidelity"]) <= set(LEVELS) and (result.table["fidelity"] == 1.0).any()


def test_multi_fidelity_refuses_workers():
    with pytest.raises(NaspruneError, match="--workers"):
        SearchOptions(method="moasha", workers=2).validate()
