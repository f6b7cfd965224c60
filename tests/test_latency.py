"""Latency measurement runs on tiny models and reports sane statistics (no timing assertions)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from nasprune.counting import ParameterCounter
from nasprune.errors import NaspruneError
from nasprune.inputs import random_inputs
from nasprune.latency import measure_latency, subnet_latency
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

FAST = dict(warmup=1, repeats=3)


@pytest.mark.parametrize("task", ["classification", "regression", "multiple_choice"])
def test_measure_latency_reports_positive_statistics(task):
    model = tiny_model("bert", task)
    result = measure_latency(model, batch_size=2, seq_len=8, num_choices=3, **FAST)
    for key in ("median_s", "mean_s", "min_s", "p90_s", "sequences_per_s"):
        assert result[key] > 0, key
    assert result["min_s"] <= result["median_s"] <= result["p90_s"] + 1e-12
    assert result["std_s"] >= 0
    assert (result["batch_size"], result["seq_len"], result["repeats"]) == (2, 8, 3)
    assert result["device"] == "cpu"


def test_measure_latency_restores_training_mode_and_accepts_a_supernet():
    model = tiny_model("roberta", "multiple_choice").train()
    result = measure_latency(SuperNetwork(model), seq_len=6, num_choices=2, **FAST)
    assert result["median_s"] > 0
    assert model.training


def test_subnet_latency_times_the_pruned_model():
    model = tiny_model("roberta", "classification")
    supernet = SuperNetwork(model)
    subnet = SubNetwork.from_counts(supernet.shape, [1, 0, 2], [5, 7, 0])
    result = subnet_latency(supernet, subnet, batch_size=1, seq_len=8, device="cpu", **FAST)
    assert result["median_s"] > 0
    assert result["params"] == ParameterCounter(model).count(subnet)
    empty = SubNetwork.from_counts(supernet.shape, [0, 0, 0], [0, 0, 0])
    assert subnet_latency(model, empty, seq_len=4, **FAST)["median_s"] > 0


def test_random_inputs_shapes_and_padding_free_ids():
    model = tiny_model("roberta", "multiple_choice")
    inputs = random_inputs(model, batch_size=2, seq_len=5, num_choices=3)
    assert inputs["input_ids"].shape == (2, 3, 5) == inputs["attention_mask"].shape
    assert bool((inputs["input_ids"] != model.config.pad_token_id).all())
    assert bool((inputs["attention_mask"] == 1).all())
    flat = random_inputs(tiny_model("bert", "classification"), batch_size=4, seq_len=7)
    assert flat["input_ids"].shape == (4, 7) and flat["input_ids"].dtype == torch.long


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"seq_len": 0}, {"repeats": 0}, {"warmup": -1}])
def test_measure_latency_rejects_bad_settings(kwargs):
    with pytest.raises(NaspruneError, match="latency needs"):
        measure_latency(tiny_model("bert", "classification"), **kwargs)
