"""Physically pruned models: slicing is exact, exports reload (with and without nasprune), ONNX."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLASSIFIER_ANSWER, load_without_nasprune, tiny_batch, tiny_model

from nasprune.counting import ParameterCounter
from nasprune.errors import NaspruneError
from nasprune.export import (
    EXPORT_META_FILE,
    export_onnx,
    export_subnetwork,
    load_pruned_model,
    pareto_front,
    pick_from_results,
    slice_subnetwork,
    subnet_from_row,
)
from nasprune.pruned import PRUNED_FAMILIES, PrunedBertConfig, PrunedRobertaConfig
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

ATOL = 1e-5


def masked_logits(supernet: SuperNetwork, batch: dict, subnet: SubNetwork) -> torch.Tensor:
    supernet.mode = "mask"
    with torch.inference_mode(), supernet.select(subnet):
        return supernet(**batch)


def pruned_logits(model, batch: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch).logits


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def edge_subnets(shape) -> dict[str, SubNetwork]:
    """Hand-made corner cases on a 4-layer model, with non-prefix heads and units."""
    heads = np.zeros((shape.num_layers, shape.num_heads), bool)
    units = np.zeros((shape.num_layers, shape.intermediate_size), bool)
    heads[0, [1, 3]] = True
    units[0, ::3] = True
    units[1, [0, 5, 63]] = True  # layer 1: no heads, so no attention block
    heads[2, [2]] = True  # layer 2: no units, so no FFN block
    # layer 3: nothing kept, so it is dropped
    return {
        "mixed": SubNetwork(heads, units),
        "empty_network": SubNetwork(np.zeros_like(heads), np.zeros_like(units)),
        "full": SubNetwork.full(shape),
        "attention_only": SubNetwork(np.ones_like(heads), np.zeros_like(units)),
    }


# ------------------------------------------------------------------------------------------------
# Slicing is exact
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", sorted(SEARCH_SPACES))
def test_sliced_model_equals_masked_supernet_for_every_space(model_and_batch, space_name):
    model, batch = model_and_batch
    supernet = SuperNetwork(model, mode="mask")
    counter = ParameterCounter(model)
    space = get_search_space(space_name, supernet.shape)
    rng = np.random.default_rng(0)
    configs = [space.smallest(), space.midpoint(), space.largest()] + [space.sample(rng) for _ in range(4)]
    for config in configs:
        subnet = space.to_subnet(config)
        pruned = slice_subnetwork(supernet, subnet)
        torch.testing.assert_close(
            pruned_logits(pruned, batch), masked_logits(supernet, batch, subnet), atol=ATOL, rtol=0
        )
        assert num_params(pruned) == counter.count(subnet)
        assert pruned.config.num_hidden_layers == len(subnet.kept_layers)


def test_edge_cases_slice_exactly_and_drop_empty_parts(family_task):
    model = tiny_model(*family_task, num_layers=4)
    batch = tiny_batch(model)
    supernet = SuperNetwork(model)
    counter = ParameterCounter(model)
    for name, subnet in edge_subnets(supernet.shape).items():
        pruned = slice_subnetwork(model, subnet)  # the bare HF model works as well as a supernet
        torch.testing.assert_close(
            pruned_logits(pruned, batch), masked_logits(supernet, batch, subnet), atol=ATOL, rtol=0, msg=name
        )
        assert num_params(pruned) == counter.count(subnet), name

    mixed = slice_subnetwork(model, edge_subnets(supernet.shape)["mixed"])
    layers = mixed.base_model.encoder.layer
    assert len(layers) == 3 and mixed.config.num_hidden_layers == 3
    assert mixed.config.heads_per_layer == [2, 0, 1]
    assert mixed.config.units_per_layer == [22, 3, 0]
    assert layers[0].attention.query.out_features == 2 * 8  # two heads of size 32 / 4
    assert layers[0].feed_forward.intermediate.out_features == 22
    assert layers[1].attention is None and layers[1].feed_forward is not None
    assert layers[2].attention is not None and layers[2].feed_forward is None
    empty = slice_subnetwork(model, edge_subnets(supernet.shape)["empty_network"])
    assert len(empty.base_model.encoder.layer) == 0


def test_non_prefix_heads_are_reindexed_in_order():
    model = tiny_model("bert", "classification")
    head_mask = np.zeros((3, 4), bool)
    head_mask[0, [1, 3]] = True
    unit_mask = np.zeros((3, 64), bool)
    unit_mask[0, [7, 2]] = True
    pruned = slice_subnetwork(model, SubNetwork(head_mask, unit_mask))
    source = model.bert.encoder.layer[0]
    target = pruned.bert.encoder.layer[0]
    torch.testing.assert_close(target.attention.key.weight[:8], source.attention.self.key.weight[8:16])
    torch.testing.assert_close(target.attention.key.weight[8:], source.attention.self.key.weight[24:32])
    torch.testing.assert_close(target.attention.output.weight[:, 8:], source.attention.output.dense.weight[:, 24:])
    torch.testing.assert_close(target.feed_forward.intermediate.bias, source.intermediate.dense.bias[[2, 7]])


def test_full_subnet_reproduces_the_hf_model_and_its_loss(model_and_batch, family_task):
    model, batch = model_and_batch
    task = family_task[1]
    pruned = slice_subnetwork(model, SubNetwork.full(SuperNetwork(model).shape))
    if task == "regression":
        labels = torch.randn(3)
    elif task == "classification":
        labels = torch.tensor([0, 2, 1])
    else:
        labels = torch.tensor([1, 0, 1])
    with torch.inference_mode():
        expected = model(**batch, labels=labels)
        got = pruned(**batch, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.loss, expected.loss, atol=ATOL, rtol=0)


def test_pruned_model_trains():
    model = tiny_model("roberta", "classification")
    batch = tiny_batch(model)
    shape = SuperNetwork(model).shape
    pruned = slice_subnetwork(model, SubNetwork.from_counts(shape, [2, 0, 4], [10, 64, 0]))
    pruned.train()
    loss = pruned(**batch, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    grads = {name: p.grad for name, p in pruned.named_parameters()}
    assert grads["roberta.encoder.layer.0.attention.query.weight"].abs().sum() > 0
    assert grads["roberta.encoder.layer.1.feed_forward.intermediate.weight"].abs().sum() > 0
    assert grads["classifier.out_proj.weight"].abs().sum() > 0


def test_slice_preserves_dtype_and_rejects_foreign_subnets():
    model = tiny_model("bert", "regression").double()
    pruned = slice_subnetwork(model, SubNetwork.from_counts(SuperNetwork(model).shape, [1, 2, 3], [4, 5, 6]))
    assert next(pruned.parameters()).dtype == torch.float64
    with pytest.raises(NaspruneError, match="do not fit"):
        slice_subnetwork(model, SubNetwork(np.ones((2, 4), bool), np.ones((2, 64), bool)))


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config_class", [PrunedBertConfig, PrunedRobertaConfig])
def test_config_defaults_validation_and_round_trip(config_class, tmp_path):
    config = config_class(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=8)
    assert config.heads_per_layer == [4, 4] and config.units_per_layer == [8, 8]
    config = config_class(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=8,
        heads_per_layer=(0, np.int64(3)), units_per_layer=[8, 0],
    )
    config.save_pretrained(tmp_path)
    loaded = config_class.from_pretrained(tmp_path)
    assert loaded.heads_per_layer == [0, 3] and loaded.units_per_layer == [8, 0]
    with pytest.raises(Exception, match="heads_per_layer"):
        config_class(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, heads_per_layer=[1])
    with pytest.raises(Exception, match="units_per_layer"):
        config_class(num_hidden_layers=1, intermediate_size=8, units_per_layer=[9])


# ------------------------------------------------------------------------------------------------
# Export and reload
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import BertTokenizer

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]) + "\n")
    return BertTokenizer(str(vocab))


def auto_class(task: str):
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    return AutoModelForMultipleChoice if task == "multiple_choice" else AutoModelForSequenceClassification


def test_export_reloads_with_auto_classes(model_and_batch, family_task, tmp_path, tiny_tokenizer):
    family, task = family_task
    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    subnet = SubNetwork.from_dict(
        {"heads": [[0, 2], [], [3]], "units": [[1, 5, 9], [0, 63], []], "num_heads": 4, "intermediate_size": 64}
    )
    out = export_subnetwork(supernet, subnet, tiny_tokenizer, tmp_path / "pruned", {"trial_id": np.int64(7)})

    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "configuration.py", "modeling.py", EXPORT_META_FILE} <= files
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary folders left behind"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == f"nasprune_{family}"
    assert config["auto_map"]["AutoConfig"].startswith("configuration.")
    # The base encoder loads too (AutoModel), from the same modeling file.
    assert config["auto_map"]["AutoModel"] == f"modeling.{PRUNED_FAMILIES[family].base_model.__name__}"
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    assert meta["format"] == "nasprune"  # heads differ from layer to layer: no stock config fits
    assert meta["trial_id"] == 7 and meta["task_kind"] == task and meta["kept_layers"] == [0, 1, 2]
    assert SubNetwork.from_dict(meta["subnet"]) == subnet

    reloaded = auto_class(task).from_pretrained(out)
    assert type(reloaded).__module__.startswith("nasprune.pruned")
    assert num_params(reloaded) == ParameterCounter(model).count(subnet) == meta["params"]
    torch.testing.assert_close(
        pruned_logits(reloaded.eval(), batch), masked_logits(supernet, batch, subnet), atol=ATOL, rtol=0
    )
    assert type(load_pruned_model(out)) is type(reloaded)

    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("film") == 7


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
    model = tiny_model("bert", "classification")
    shape = SuperNetwork(model).shape
    out = tmp_path / "model"
    export_subnetwork(model, SubNetwork.full(shape), None, out)
    with pytest.raises(NaspruneError, match="already exists"):
        export_subnetwork(model, SubNetwork.full(shape), None, out)
    smaller = SubNetwork.from_counts(shape, [1, 1, 1], [1, 1, 1])
    export_subnetwork(model, smaller, None, out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["heads_per_layer"] == [1, 1, 1]
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_trust_remote_code_loads_without_nasprune(tmp_path):
    jobs, expected = [], []
    for family, task in (("bert", "multiple_choice"), ("roberta", "regression"), ("bert", "classification")):
        model = tiny_model(family, task)
        batch = tiny_batch(model)
        supernet = SuperNetwork(model)
        subnet = SubNetwork.from_counts(supernet.shape, [2, 0, 4], [0, 30, 64])
        out = export_subnetwork(supernet, subnet, None, tmp_path / f"{family}-{task}")
        jobs.append({"directory": str(out), "task": task, "batch": {k: v.tolist() for k, v in batch.items()}})
        expected.append(masked_logits(supernet, batch, subnet))
    replies = load_without_nasprune(CLASSIFIER_ANSWER, jobs, tmp_path)
    for reply, logits in zip(replies, expected, strict=True):
        assert reply["module"].startswith("transformers_modules.")
        torch.testing.assert_close(torch.tensor(reply["logits"]), logits, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------
# ONNX
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,task", [("bert", "classification"), ("roberta", "multiple_choice")])
def test_onnx_export_matches_torch(family, task, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    model = tiny_model(family, task)
    pruned = slice_subnetwork(model, SubNetwork.from_counts(SuperNetwork(model).shape, [1, 0, 4], [0, 9, 64]))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # Both tiny families have two token types, so the graph takes the segment ids too.
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    # Other batch and sequence sizes than the export example: the axes are dynamic.
    for batch_size, seq_len in ((3, 9), (1, 5)):
        batch = tiny_batch(pruned, batch=batch_size, seq_len=seq_len)
        inputs = {k: batch[k] for k in names}
        (logits,) = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})
        torch.testing.assert_close(torch.from_numpy(logits), pruned_logits(pruned, inputs), atol=1e-4, rtol=0)


def test_onnx_export_names_the_extra_when_packages_are_missing(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a)
    )
    model = tiny_model("bert", "classification")
    with pytest.raises(NaspruneError, match=r"pip install 'nasprune\[onnx\]'"):
        export_onnx(model, tmp_path / "model.onnx")


# ------------------------------------------------------------------------------------------------
# Choosing the point to export
# ------------------------------------------------------------------------------------------------
def results_table() -> pd.DataFrame:
    subnet = json.dumps(SubNetwork.from_counts(SuperNetwork(tiny_model("bert", "classification")).shape,
                                               [1, 2, 3], [4, 5, 6]).to_dict())
    rows = [
        # trial, valid_error, relative_params, pareto
        (0, 0.10, 1.00, True),
        (1, 0.30, 0.40, True),
        (2, 0.15, 0.70, True),
        (3, 0.40, 0.50, False),
        (4, 0.45, 0.20, True),
        (5, 0.20, 0.55, True),
    ]
    return pd.DataFrame(
        {
            "trial_id": [r[0] for r in rows],
            "valid_error": [r[1] for r in rows],
            "test_error": [r[1] + 0.01 for r in rows],
            "params": [int(r[2] * 1000) for r in rows],
            "relative_params": [r[2] for r in rows],
            "macs": [int(r[2] * 5000) for r in rows],
            "relative_macs": [r[2] for r in rows],
            "pareto": [r[3] for r in rows],
            "subnet": [subnet] * len(rows),
        }
    )


def test_pareto_front_is_sorted_smallest_first():
    assert pareto_front(results_table())["trial_id"].tolist() == [4, 1, 5, 2, 0]


def test_pick_by_index_budget_and_error():
    table = results_table()
    assert pick_from_results(table, pick=0)["trial_id"] == 4
    assert pick_from_results(table, pick=2)["trial_id"] == 5
    assert pick_from_results(table, pick=-1)["trial_id"] == 0
    assert pick_from_results(table, max_params=0.6)["trial_id"] == 5  # lowest error within budget
    assert pick_from_results(table, max_params=0.55)["trial_id"] == 5  # the bound is inclusive
    assert pick_from_results(table, max_params=1.0)["trial_id"] == 0
    assert pick_from_results(table, max_error=0.3)["trial_id"] == 1  # smallest good enough
    assert pick_from_results(table, max_error=0.16)["trial_id"] == 2
    row = pick_from_results(table, pick=1)
    assert subnet_from_row(row).heads_per_layer.tolist() == [1, 2, 3]


def test_pick_reads_a_results_csv(tmp_path):
    path = tmp_path / "results.csv"
    results_table().to_csv(path, index=False)
    table = pd.read_csv(path)
    table["pareto"] = table["pareto"].astype(str)  # as if written by a tool that stringifies bools
    assert pick_from_results(table, max_error=0.3)["trial_id"] == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one"),
        ({"pick": 0, "max_params": 0.5}, "exactly one"),
        ({"pick": 5}, "out of range"),
        ({"pick": -6}, "out of range"),
        ({"max_params": 0.1}, "no Pareto point has relative_params"),
        ({"max_params": 0.0}, "fraction"),
        ({"max_error": 0.05}, "no Pareto point has valid_error"),
    ],
)
def test_pick_errors(kwargs, match):
    with pytest.raises(NaspruneError, match=match):
        pick_from_results(results_table(), **kwargs)


def test_pick_needs_the_result_columns():
    with pytest.raises(NaspruneError, match="pareto"):
        pick_from_results(results_table().drop(columns=["pareto"]), pick=0)

