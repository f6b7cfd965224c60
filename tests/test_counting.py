"""Parameter counts equal those of physically pruned models; MACs follow the paper's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_subnet, tiny_model
from nasprune.counting import LayerCounts, ParameterCounter, count_macs, relative_macs
from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork, get_adapter


def numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def physically_pruned_numel(model, subnet: SubNetwork) -> int:
    """Cut the kept rows/columns into fresh modules and count what they hold."""
    adapter = get_adapter(model.config.model_type)
    base = adapter.base_model(model)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    total = numel(base.embeddings) + numel(base.pooler) + numel(model.classifier)
    for index, layer in enumerate(adapter.layers(model)):
        m = adapter.layer_modules(layer)
        heads = subnet.head_indices(index)
        units = subnet.unit_indices(index)
        kept = []
        if len(heads):
            rows = torch.as_tensor((heads[:, None] * head_dim + np.arange(head_dim)).reshape(-1))
            for source in (m.query, m.key, m.value):
                linear = nn.Linear(source.in_features, len(rows))
                linear.weight.data = source.weight.data[rows].clone()
                linear.bias.data = source.bias.data[rows].clone()
                kept.append(linear)
            out = nn.Linear(len(rows), m.attn_out.out_features)
            out.weight.data = m.attn_out.weight.data[:, rows].clone()
            kept += [out, nn.LayerNorm(out.out_features)]
        if len(units):
            cols = torch.as_tensor(units)
            ffn_in = nn.Linear(m.ffn_in.in_features, len(cols))
            ffn_in.weight.data = m.ffn_in.weight.data[cols].clone()
            ffn_in.bias.data = m.ffn_in.bias.data[cols].clone()
            ffn_out = nn.Linear(len(cols), m.ffn_out.out_features)
            ffn_out.weight.data = m.ffn_out.weight.data[:, cols].clone()
            kept += [ffn_in, ffn_out, nn.LayerNorm(ffn_out.out_features)]
        total += sum(numel(module) for module in kept)
    return total


def test_full_count_equals_numel(family_task):
    model = tiny_model(*family_task)
    counter = ParameterCounter(model)
    full = SubNetwork.full(counter.shape)
    assert counter.count(full) == sum(p.numel() for p in model.parameters())
    assert counter.relative(full) == 1.0


def test_layer_breakdown_by_hand():
    counter = ParameterCounter(tiny_model("bert", "classification"))
    # d=32, dh=8: Q/K/V rows 3*(8*32+8) + output columns 8*32; bias 32 + LayerNorm 64.
    # Per unit: a row of 32 + bias 1, and a column of 32; bias 32 + LayerNorm 64.
    assert counter.layers[0] == LayerCounts(per_head=1048, attn_fixed=96, per_unit=65, ffn_fixed=96)


@pytest.mark.parametrize("prefix", [False, True])
def test_count_equals_physically_pruned_copy(family_task, prefix):
    model = tiny_model(*family_task)
    counter = ParameterCounter(model)
    for seed in range(6):
        subnet = random_subnet(counter.shape, seed, prefix=prefix)
        assert counter.count(subnet) == physically_pruned_numel(model, subnet)


def test_empty_blocks_drop_their_bias_and_layernorm():
    model = tiny_model("roberta", "classification")
    counter = ParameterCounter(model)
    shape = counter.shape
    empty = SubNetwork.from_counts(shape, [0, 0, 0], [0, 0, 0])
    assert counter.count(empty) == counter.non_encoder == physically_pruned_numel(model, empty)
    one_head = SubNetwork.from_counts(shape, [1, 0, 0], [0, 0, 0])
    assert counter.count(one_head) - counter.count(empty) == 1048 + 96


def test_shared_parameters_are_counted_once():
    model = tiny_model("bert", "multiple_choice")
    model.alias = model.classifier  # the same parameters reachable under two names
    counter = ParameterCounter(model)
    every_name = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    unique = sum(p.numel() for p in model.parameters())
    assert every_name > unique == counter.count(SubNetwork.full(counter.shape))


def test_missing_bias_is_counted_exactly():
    model = tiny_model("bert", "regression")
    layer = get_adapter("bert").layers(model)[1]
    layer.attention.self.key.bias = None
    counter = ParameterCounter(model)
    assert counter.count(SubNetwork.full(counter.shape)) == sum(p.numel() for p in model.parameters())
    assert counter.layers[1].per_head == 1048 - 8


def test_counter_accepts_a_supernetwork_and_rejects_wrong_shapes():
    model = tiny_model("bert", "classification")
    counter = ParameterCounter(SuperNetwork(model))
    assert counter.total == sum(p.numel() for p in model.parameters())
    with pytest.raises(NaspruneError, match="do not fit"):
        counter.count(SubNetwork(np.ones((2, 4), bool), np.ones((2, 64), bool)))


def test_macs_by_hand():
    shape = ModelShape(num_layers=2, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=64)
    subnet = SubNetwork.from_counts(shape, [2, 0], [3, 1])
    # T=10: per head 3*10*32*8 + 2*10*10*8 + 10*8*32 = 7680 + 1600 + 2560 = 11840;
    # per unit 2*10*32 = 640. Two heads and four units: 23680 + 2560.
    assert count_macs(subnet, shape, seq_len=10) == 26240
    # Full: 8 heads and 128 units = 94720 + 81920.
    assert count_macs(SubNetwork.full(shape), shape, seq_len=10) == 176640
    assert relative_macs(subnet, shape, seq_len=10) == pytest.approx(26240 / 176640)


def test_macs_ignore_which_heads_are_kept():
    shape = ModelShape(num_layers=2, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=64)
    prefix = SubNetwork.from_counts(shape, [2, 1], [3, 0])
    scattered_heads = np.zeros((2, 4), bool)
    scattered_heads[0, [1, 3]] = scattered_heads[1, 2] = True
    scattered_units = np.zeros((2, 64), bool)
    scattered_units[0, [5, 9, 60]] = True
    scattered = SubNetwork(scattered_heads, scattered_units)
    assert count_macs(prefix, shape, 16) == count_macs(scattered, shape, 16)
    with pytest.raises(NaspruneError):
        count_macs(SubNetwork.full(shape), ModelShape(3, 4, 8, 32, 64), 16)
