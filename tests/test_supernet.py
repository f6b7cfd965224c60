"""The super-network runs sub-networks exactly as physically removing heads, units and layers would."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_subnet, tiny_batch, tiny_model
from nasprune.errors import NaspruneError
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, get_adapter, load_hf_model, supported_families

ATOL = 1e-5


def hf_logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def run(supernet: SuperNetwork, batch, subnet: SubNetwork | None = None) -> torch.Tensor:
    with torch.no_grad(), supernet.select(subnet):
        return supernet(**batch)


def zero_out(model, subnet: SubNetwork) -> None:
    """Delete the dropped heads' and units' weights of ``model`` in place by zeroing them."""
    adapter = get_adapter(model.config.model_type)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for index, layer in enumerate(adapter.layers(model)):
            m = adapter.layer_modules(layer)
            for head in np.flatnonzero(~subnet.head_mask[index]):
                rows = slice(head * head_dim, (head + 1) * head_dim)
                for linear in (m.query, m.key, m.value):
                    linear.weight[rows] = 0
                    linear.bias[rows] = 0
                m.attn_out.weight[:, rows] = 0
            for unit in np.flatnonzero(~subnet.unit_mask[index]):
                m.ffn_in.weight[unit] = 0
                m.ffn_in.bias[unit] = 0
                m.ffn_out.weight[:, unit] = 0


class _SkipAttention(nn.Module):
    """Stands in for a HF attention block that was removed: returns its input."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states, None


# --- exactness against HF ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_full_subnetwork_reproduces_hf_logits(model_and_batch, mode):
    model, batch = model_and_batch
    supernet = SuperNetwork(model, mode=mode)
    expected = hf_logits(model, batch)
    full = run(supernet, batch, SubNetwork.full(supernet.shape))
    assert full.shape == expected.shape
    torch.testing.assert_close(full, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(run(supernet, batch), expected, atol=ATOL, rtol=0)


def test_logit_shapes(model_and_batch, family_task):
    model, batch = model_and_batch
    logits = run(SuperNetwork(model), batch)
    expected = {"classification": (3, 3), "regression": (3, 1), "multiple_choice": (3, 2)}
    assert tuple(logits.shape) == expected[family_task[1]]


@pytest.mark.parametrize("prefix", [False, True])
def test_dropping_heads_and_units_equals_zeroing_their_weights(model_and_batch, prefix):
    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    for seed in range(3):
        subnet = random_subnet(supernet.shape, seed, prefix=prefix, min_keep=1)
        pruned = copy.deepcopy(model)
        zero_out(pruned, subnet)
        torch.testing.assert_close(run(supernet, batch, subnet), hf_logits(pruned, batch), atol=ATOL, rtol=0)


def test_single_dropped_head_changes_the_output():
    model = tiny_model("bert", "classification")
    batch = tiny_batch(model)
    supernet = SuperNetwork(model)
    head_mask = np.ones((3, 4), bool)
    head_mask[1, 2] = False
    subnet = SubNetwork(head_mask, np.ones((3, 64), bool))
    pruned = copy.deepcopy(model)
    zero_out(pruned, subnet)
    out = run(supernet, batch, subnet)
    torch.testing.assert_close(out, hf_logits(pruned, batch), atol=ATOL, rtol=0)
    assert not torch.allclose(out, hf_logits(model, batch), atol=1e-4)


def test_empty_layer_equals_removing_the_layer(model_and_batch):
    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    shape = supernet.shape
    heads = np.full(shape.num_layers, shape.num_heads)
    units = np.full(shape.num_layers, shape.intermediate_size)
    heads[1] = units[1] = 0
    subnet = SubNetwork.from_counts(shape, heads, units)
    shallower = copy.deepcopy(model)
    del supernet.adapter.layers(shallower)[1]
    torch.testing.assert_close(run(supernet, batch, subnet), hf_logits(shallower, batch), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_no_heads_skips_attention_and_no_units_skips_ffn(mode):
    model = tiny_model("roberta", "classification")
    batch = tiny_batch(model)
    supernet = SuperNetwork(model, mode=mode)
    subnet = SubNetwork.from_counts(supernet.shape, [0, 4, 2], [64, 0, 10])
    reference = copy.deepcopy(model)
    zero_out(reference, subnet)
    layers = supernet.adapter.layers(reference)
    layers[0].attention = _SkipAttention()
    layers[1].feed_forward_chunk = lambda attention_output: attention_output
    torch.testing.assert_close(run(supernet, batch, subnet), hf_logits(reference, batch), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_layer_without_heads_and_units_is_identity(mode):
    model = tiny_model("bert", "classification")
    batch = tiny_batch(model)
    supernet = SuperNetwork(model, mode=mode)
    shape = supernet.shape
    empty = SubNetwork.from_counts(shape, [0] * shape.num_layers, [0] * shape.num_layers)
    with torch.no_grad(), supernet.select(empty):
        hidden, ext_mask = supernet.embed(**batch)
        assert torch.equal(supernet.encode(hidden, ext_mask), hidden)
    # One empty middle layer: its output is its input, i.e. layers 0 and 2 run back to back.
    middle = SubNetwork.from_counts(shape, [4, 0, 4], [64, 0, 64])
    first_only = SubNetwork.from_counts(shape, [4, 0, 0], [64, 0, 0])
    with torch.no_grad(), supernet.select(first_only):
        after_first = supernet.encode(hidden, ext_mask)
    with torch.no_grad(), supernet.select(middle):
        through_middle = supernet.encode(hidden, ext_mask)
    last_only = supernet.adapter.layers(model)[2]
    with torch.no_grad():
        expected = last_only(after_first, ext_mask)
    torch.testing.assert_close(through_middle, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("prefix", [False, True])
def test_slice_mode_equals_mask_mode(model_and_batch, prefix):
    model, batch = model_and_batch
    sliced, masked = SuperNetwork(model, mode="slice"), SuperNetwork(model, mode="mask")
    for seed in range(4):
        subnet = random_subnet(sliced.shape, seed, prefix=prefix)
        torch.testing.assert_close(run(sliced, batch, subnet), run(masked, batch, subnet), atol=ATOL, rtol=0)


def test_float64_model_is_supported():
    model = tiny_model("bert", "regression").double()
    batch = tiny_batch(model)
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, 3, min_keep=1)
    pruned = copy.deepcopy(model)
    zero_out(pruned, subnet)
    out = run(supernet, batch, subnet)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, hf_logits(pruned, batch), atol=1e-10, rtol=0)


# --- selection -----------------------------------------------------------------------------
def test_select_restores_full_network_after_exception(bert_model):
    batch = tiny_batch(bert_model)
    supernet = SuperNetwork(bert_model)
    small = SubNetwork.from_counts(supernet.shape, [1, 1, 0], [4, 4, 0])
    with pytest.raises(RuntimeError):
        with supernet.select(small):
            assert supernet.active == small
            run(supernet, batch)
            raise RuntimeError("boom")
    assert supernet.active is None
    torch.testing.assert_close(run(supernet, batch), hf_logits(bert_model, batch), atol=ATOL, rtol=0)


def test_nested_select_restores_the_outer_subnetwork(bert_model):
    supernet = SuperNetwork(bert_model)
    outer = SubNetwork.from_counts(supernet.shape, [2, 2, 2], [8, 8, 8])
    inner = SubNetwork.from_counts(supernet.shape, [1, 1, 1], [4, 4, 4])
    with supernet.select(outer):
        with supernet.select(inner):
            assert supernet.active == inner
        assert supernet.active == outer
    assert supernet.active is None


def test_select_rejects_a_subnetwork_of_another_shape(bert_model):
    supernet = SuperNetwork(bert_model)
    wrong = SubNetwork(np.ones((2, 4), bool), np.ones((2, 64), bool))
    with pytest.raises(NaspruneError, match="do not fit"):
        with supernet.select(wrong):
            pass
    assert supernet.active is None


def test_unknown_mode_is_rejected(bert_model):
    with pytest.raises(NaspruneError, match="mode"):
        SuperNetwork(bert_model, mode="prune")


# --- cached embeddings ---------------------------------------------------------------------
def test_cached_embeddings_give_the_same_logits(model_and_batch):
    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, 7)
    with torch.no_grad():
        hidden, ext_mask = supernet.embed(**batch)
        with supernet.select(subnet):
            again, _ = supernet.embed(**batch)
            from_cache = supernet.forward_from_embeddings(hidden, ext_mask)
            # Slicing the cache by example must work for multiple choice too.
            first_two = supernet.forward_from_embeddings(hidden[:2], ext_mask[:2])
    assert torch.equal(hidden, again)
    assert hidden.shape[:-1] == batch["input_ids"].shape
    torch.testing.assert_close(from_cache, run(supernet, batch, subnet), atol=ATOL, rtol=0)
    torch.testing.assert_close(first_two, from_cache[:2], atol=ATOL, rtol=0)


def test_forward_without_attention_mask_matches_hf(bert_model):
    batch = tiny_batch(bert_model)
    del batch["attention_mask"]
    expected = hf_logits(bert_model, batch)
    torch.testing.assert_close(run(SuperNetwork(bert_model), batch), expected, atol=ATOL, rtol=0)


# --- training ------------------------------------------------------------------------------
def test_gradients_reach_the_shared_weights_in_slice_mode(bert_model):
    batch = tiny_batch(bert_model)
    head_mask = np.ones((3, 4), bool)
    head_mask[0, [0, 2]] = False  # not a prefix: exercises index_select
    unit_mask = np.ones((3, 64), bool)
    unit_mask[0, 5:40] = False
    subnet = SubNetwork(head_mask, unit_mask)
    grads = {}
    for mode in ("slice", "mask"):
        model = copy.deepcopy(bert_model)
        supernet = SuperNetwork(model, mode=mode)
        with supernet.select(subnet):
            supernet(**batch).pow(2).sum().backward()
        grads[mode] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    layer0 = "bert.encoder.layer.0."
    query = grads["slice"][layer0 + "attention.self.query.weight"]
    assert torch.all(query[0:8] == 0) and torch.all(query[16:24] == 0)
    assert torch.all(query[8:16].abs().sum(dim=1) > 0)
    ffn_in = grads["slice"][layer0 + "intermediate.dense.weight"]
    assert torch.all(ffn_in[5:40] == 0) and torch.all(ffn_in[:5].abs().sum(dim=1) > 0)
    assert grads["slice"].keys() == grads["mask"].keys()
    for name, grad in grads["slice"].items():
        torch.testing.assert_close(grad, grads["mask"][name], atol=1e-5, rtol=1e-4)


def test_dropout_is_active_in_train_mode_only(bert_model):
    batch = tiny_batch(bert_model)
    supernet = SuperNetwork(bert_model).train()
    subnet = SubNetwork.from_counts(supernet.shape, [2, 3, 4], [30, 64, 10])
    with torch.no_grad(), supernet.select(subnet):
        first, second = supernet(**batch), supernet(**batch)
    assert not torch.allclose(first, second)
    supernet.eval()
    with torch.no_grad(), supernet.select(subnet):
        assert torch.equal(supernet(**batch), supernet(**batch))


def test_train_mode_without_dropout_is_deterministic():
    model = tiny_model("roberta", "multiple_choice", dropout=0.0)
    batch = tiny_batch(model)
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, 2, min_keep=1)
    expected = run(supernet, batch, subnet)
    supernet.train()
    torch.testing.assert_close(run(supernet, batch, subnet), expected, atol=ATOL, rtol=0)


# --- families and loading ------------------------------------------------------------------
def test_unknown_family_names_the_supported_ones():
    with pytest.raises(NaspruneError) as info:
        get_adapter("t5")
    assert "bert" in str(info.value) and "roberta" in str(info.value)
    assert {"bert", "roberta"} <= set(supported_families())


def test_unsupported_task_head_is_rejected():
    from transformers import BertForTokenClassification

    from conftest import tiny_config

    with pytest.raises(NaspruneError, match="BertForSequenceClassification"):
        SuperNetwork(BertForTokenClassification(tiny_config("bert")))


def test_task_kind_is_read_from_the_model(family_task):
    family, task = family_task
    assert SuperNetwork(tiny_model(family, task)).task_kind == task


def test_load_hf_model_from_a_local_folder(tmp_path, bert_model):
    bert_model.save_pretrained(tmp_path)
    loaded = load_hf_model(str(tmp_path), "classification", num_labels=3)
    batch = tiny_batch(bert_model)
    torch.testing.assert_close(hf_logits(loaded.eval(), batch), hf_logits(bert_model, batch))
    supernet = SuperNetwork.from_pretrained(str(tmp_path), task_kind="classification", num_labels=3)
    torch.testing.assert_close(run(supernet.eval(), batch), hf_logits(bert_model, batch), atol=ATOL, rtol=0)


def test_load_hf_model_errors_are_user_errors(tmp_path):
    with pytest.raises(NaspruneError, match="could not load"):
        load_hf_model(str(tmp_path), "classification")
    with pytest.raises(NaspruneError, match="model path .*missing/model does not exist"):
        load_hf_model(str(tmp_path / "missing" / "model"), "multiple_choice")
    with pytest.raises(NaspruneError, match="task kind"):
        load_hf_model(str(tmp_path), "translation")
    with pytest.raises(NaspruneError, match="one output"):
        load_hf_model(str(tmp_path), "regression", num_labels=3)
    with pytest.raises(NaspruneError, match="num_labels >= 2"):
        load_hf_model(str(tmp_path), "classification", num_labels=1)


def test_slice_plans_use_views_for_contiguous_heads_and_gathers_otherwise():
    from nasprune.supernet.encoder import compile_plan

    shape = SuperNetwork(tiny_model("bert", "classification")).shape
    head_mask = np.array([[1, 1, 1, 1], [0, 1, 1, 0], [1, 0, 1, 0]], bool)
    unit_mask = np.zeros((3, 64), bool)
    unit_mask[0], unit_mask[1, :10], unit_mask[2, [3, 7]] = True, True, True
    plan = compile_plan(SubNetwork(head_mask, unit_mask), shape, "slice", torch.device("cpu"), torch.float32)
    assert plan[0].head_rows is None and plan[0].unit_rows is None
    assert plan[1].head_rows == slice(8, 24) and plan[1].unit_rows == slice(0, 10)
    assert plan[2].head_rows.tolist() == list(range(0, 8)) + list(range(16, 24))
    assert plan[2].unit_rows.tolist() == [3, 7]
    assert [p.num_heads for p in plan] == [4, 2, 2] and [p.num_units for p in plan] == [64, 10, 2]
