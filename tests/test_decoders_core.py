"""Decoder support in the core: the Llama family (Llama, Mistral, Qwen2, Qwen3) as super-networks,
grouped-query attention (GQA) in sub-networks, spaces, counting and rewiring.

Tiny random models made here; logits are compared with HF's own forward, and pruned sub-networks
with HF models of a smaller config holding the kept weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasprune.counting import ParameterCounter, count_fixed_macs, count_macs
from nasprune.errors import NaspruneError
from nasprune.importance import Importance, mask_gradients
from nasprune.rewiring import Permutation, apply_permutation, importance_order, rewire
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import DECODER_MODEL_TYPES, ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork, get_adapter, supported_families
from nasprune.supernet.encoder import compile_plan

ATOL = 1e-5
VOCAB = 100
PAD = 0
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def decoder_config(family: str, heads: int = 4, kv_heads: int = 2, layers: int = 2, **overrides):
    """A tiny config; head_dim explicit so that smaller configs keep it. Init 10x HF's scale, so that
    logits depend visibly on every head and unit."""
    import transformers

    common = dict(
        hidden_size=32, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=8, intermediate_size=48,
        num_hidden_layers=layers, vocab_size=VOCAB, pad_token_id=PAD, initializer_range=0.2,
        max_position_embeddings=64, tie_word_embeddings=False,
    )
    if family == "mistral":
        common["sliding_window"] = 3  # every layer, shorter than the test sequences
    if family == "qwen2":
        # Layers from max_window_layers on attend within the window; Qwen2 has Q/K/V biases.
        common.update(use_sliding_window=True, sliding_window=3, max_window_layers=1)
    common.update(overrides)
    name = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[family]
    return getattr(transformers, f"{name}Config")(**common)


def decoder_model(family: str, task: str = "causal_lm", seed: int = 0, attn: str = "eager", **overrides):
    import transformers

    config = decoder_config(family, **overrides)
    config._attn_implementation = attn
    name = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[family]
    suffix = "ForCausalLM" if task == "causal_lm" else "ForSequenceClassification"
    if task != "causal_lm":
        config.num_labels = 3
    torch.manual_seed(seed)
    return getattr(transformers, name + suffix)(config).eval()


def padded_batch(batch: int = 3, length: int = 8, seed: int = 1, left: bool = False) -> dict:
    """Token ids without the pad id, the second and third sequences padded (right or left)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    for row, used in ((1, length - 3), (2, length - 5)):
        if left:
            mask[row, : length - used] = 0
        else:
            mask[row, used:] = 0
    ids = ids.masked_fill(mask == 0, PAD)
    return {"input_ids": ids, "attention_mask": mask}


def lm_logits_at_tokens(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Logits at padding positions are never read (no loss, no token after them).
    return logits[mask.bool()]


# --- the full sub-network is HF's model ------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_full_causal_lm_equals_hf(family, attn):
    model = decoder_model(family, attn=attn)
    supernet = SuperNetwork(model)
    assert supernet.task_kind == "causal_lm" and supernet.shape.causal and supernet.shape.group_size == 2
    for left in (False, True):
        batch = padded_batch(length=9, left=left)
        with torch.no_grad():
            expected = model(**batch).logits
            got = supernet(**batch)
        assert got.shape == (3, 9, VOCAB)
        torch.testing.assert_close(
            lm_logits_at_tokens(got, batch["attention_mask"]),
            lm_logits_at_tokens(expected, batch["attention_mask"]), atol=ATOL, rtol=0,
        )
    with torch.no_grad():  # no padding mask: SDPA's causal path
        ids = batch["input_ids"][:1, :]
        torch.testing.assert_close(supernet(ids), model(input_ids=ids).logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_sequence_classification_equals_hf(family):
    model = decoder_model(family, task="classification")
    supernet = SuperNetwork(model)
    assert supernet.task_kind == "classification"
    for left in (False, True):  # the last token that is not padding, wherever the padding is
        batch = padded_batch(left=left)
        with torch.no_grad():
            torch.testing.assert_close(supernet(**batch), model(**batch).logits, atol=ATOL, rtol=0)


def test_head_dim_apart_from_hidden_size():
    """Qwen3-style heads wider than hidden_size / heads (q_proj has more rows than the hidden size)."""
    model = decoder_model("qwen3", head_dim=16)
    supernet = SuperNetwork(model)
    assert supernet.shape.head_dim == 16 and model.model.layers[0].self_attn.q_proj.out_features == 64
    batch = padded_batch()
    with torch.no_grad():
        expected = model(**batch).logits
        got = supernet(**batch)
    mask = batch["attention_mask"]
    torch.testing.assert_close(lm_logits_at_tokens(got, mask), lm_logits_at_tokens(expected, mask), atol=ATOL, rtol=0)
    assert ParameterCounter(model).total == sum(p.numel() for p in model.parameters())


def test_window_really_limits_attention():
    """Mistral with a window of 3 differs from Llama-style full attention on the same weights,
    so the window test above is not vacuous."""
    model = decoder_model("mistral")
    batch = padded_batch(length=9)
    windowed = SuperNetwork(model)
    model.config.sliding_window = None
    full = SuperNetwork(model)
    with torch.no_grad():
        assert not torch.allclose(windowed(**batch), full(**batch), atol=1e-3)


# --- dropping heads, groups and units equals deleting their weights --------------------------
def cut_model(model, groups: list[int], positions: list[int], units: list[int]):
    """A HF model of a smaller config that holds only the kept weights: key/value groups
    ``groups``, in each the query heads at ``positions``, and FFN ``units``, in every layer."""
    config = model.config.to_dict()
    group_size = model.config.num_attention_heads // model.config.num_key_value_heads
    heads = [g * group_size + p for g in groups for p in positions]
    config.update(num_attention_heads=len(heads), num_key_value_heads=len(groups), intermediate_size=len(units))
    small = type(model)(type(model.config).from_dict(config)).eval()
    dh = model.config.head_dim

    def rows(indices):
        return torch.as_tensor([i * dh + j for i in indices for j in range(dh)])

    q_rows, kv_rows, unit_rows = rows(heads), rows(groups), torch.as_tensor(units)
    state = {}
    for name, tensor in model.state_dict().items():
        if ".q_proj." in name:
            tensor = tensor[q_rows]
        elif ".k_proj." in name or ".v_proj." in name:
            tensor = tensor[kv_rows]
        elif ".o_proj." in name:
            tensor = tensor[:, q_rows]
        elif ".gate_proj." in name or ".up_proj." in name:
            tensor = tensor[unit_rows]
        elif ".down_proj." in name:
            tensor = tensor[:, unit_rows]
        state[name] = tensor
    small.load_state_dict(state)
    return small


def uniform_subnet(shape: ModelShape, groups, positions, units) -> SubNetwork:
    head_mask = np.zeros((shape.num_layers, shape.num_heads), bool)
    for g in groups:
        for p in positions:
            head_mask[:, g * shape.group_size + p] = True
    unit_mask = np.zeros((shape.num_layers, shape.intermediate_size), bool)
    unit_mask[:, units] = True
    return SubNetwork(head_mask, unit_mask)


CUTS = {
    "whole group": ([1], [0, 1], list(range(0, 48, 2))),
    "heads within groups": ([0, 1], [1], list(range(5, 30))),
    "group and head": ([1], [0], [3, 7, 11, 40]),
}


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("task", ["causal_lm", "classification"])
@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
def test_dropping_equals_deleting(family, task, cut):
    model = decoder_model(family, task=task)
    supernet = SuperNetwork(model)
    groups, positions, units = CUTS[cut]
    subnet = uniform_subnet(supernet.shape, groups, positions, units)
    small = cut_model(model, groups, positions, units)
    batch = padded_batch(length=9)
    with torch.no_grad(), supernet.select(subnet):
        got = supernet(**batch)
        expected = small(**batch).logits
    mask = batch["attention_mask"]
    if task == "causal_lm":
        got, expected = lm_logits_at_tokens(got, mask), lm_logits_at_tokens(expected, mask)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # Counted parameters are those of the model with the weights deleted.
    assert ParameterCounter(model).count(subnet) == sum(p.numel() for p in small.parameters())
    # The mask mode (full weights, zeroed heads) agrees with slicing.
    supernet.mode = "mask"
    with torch.no_grad(), supernet.select(subnet):
        masked = supernet(**batch)
    if task == "causal_lm":
        masked = lm_logits_at_tokens(masked, mask)
    torch.testing.assert_close(masked, got, atol=ATOL, rtol=0)


def test_per_layer_gqa_subnet_slice_equals_mask_and_skips_layers():
    """Different group/head counts per layer, and a layer with no heads (its attention skipped)."""
    model = decoder_model("llama", layers=3)
    supernet = SuperNetwork(model)
    shape = supernet.shape
    head_mask = np.zeros((3, 4), bool)
    head_mask[0, [2, 3]] = True  # group 1 whole
    head_mask[1, [0, 3]] = True  # one head in each group
    unit_mask = np.random.default_rng(0).random((3, 48)) < 0.5
    subnet = SubNetwork(head_mask, unit_mask)
    batch = padded_batch(length=7)
    with torch.no_grad(), supernet.select(subnet):
        sliced = supernet(**batch)
    supernet.mode = "mask"
    with torch.no_grad(), supernet.select(subnet):
        masked = supernet(**batch)
    mask = batch["attention_mask"]
    torch.testing.assert_close(lm_logits_at_tokens(sliced, mask), lm_logits_at_tokens(masked, mask), atol=ATOL, rtol=0)
    cpu = torch.device("cpu")
    plan = compile_plan(subnet, shape, "mask", cpu, torch.float32)
    assert [p.num_kv_heads for p in plan] == [2, 2, 2]  # mask mode: all K/V heads run
    plan = compile_plan(subnet, shape, "slice", cpu, torch.float32)
    assert [p.num_kv_heads for p in plan] == [1, 2, 0] and plan[2].num_heads == 0
    assert ParameterCounter(model).count(subnet) < ParameterCounter(model).total
    assert shape.kv_mask(head_mask).tolist() == [[False, True], [True, True], [False, False]]


# --- GQA validity ----------------------------------------------------------------------------
def test_invalid_gqa_masks_are_refused():
    shape = ModelShape.from_config(decoder_config("llama", heads=6, kv_heads=2, hidden_size=48))
    assert (shape.num_kv_heads, shape.kv_heads, shape.group_size, shape.causal, shape.gated_ffn) == (2, 2, 3, True, True)
    units = np.ones((2, 48), bool)
    valid = [[1, 1, 0, 1, 0, 1], [0, 0, 0, 1, 1, 1]]  # 2+2 / 0+3 heads per group
    shape.check(SubNetwork(valid, units))
    invalid = [[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1]]  # 2+1 heads in layer 0
    with pytest.raises(NaspruneError, match="layer 0 keeps \\[2, 1\\] query heads"):
        shape.check(SubNetwork(invalid, units))
    supernet = SuperNetwork(decoder_model("llama", heads=6, kv_heads=2, hidden_size=48))
    with pytest.raises(NaspruneError, match="same number"):
        with supernet.select(SubNetwork(invalid, units)):
            pass
    with pytest.raises(NaspruneError, match="do not split"):
        ModelShape(2, 6, 8, 32, 48, num_kv_heads=4)


def test_shapes_of_decoders_and_encoders():
    encoder = ModelShape(2, 4, 8, 32, 64)
    assert (encoder.kv_heads, encoder.group_size, encoder.grouped, encoder.causal) == (4, 1, False, False)
    no_gqa = ModelShape.from_config(decoder_config("llama", heads=4, kv_heads=4))
    assert no_gqa.num_kv_heads == 0 and not no_gqa.grouped and no_gqa.causal
    # Any sub-network of a model without GQA is valid, as for encoders.
    no_gqa.check(SubNetwork([[1, 0, 0, 0], [0, 1, 1, 0]], np.ones((2, 48), bool)))
    assert set(DECODER_MODEL_TYPES) >= {"llama", "mistral", "qwen2", "qwen3"}
    # subnet.py (below the adapters) lists the decoders itself; the two must agree.
    for family in supported_families():
        assert get_adapter(family).causal == (family in DECODER_MODEL_TYPES), family


# --- spaces ----------------------------------------------------------------------------------
GQA_SHAPES = {
    "gqa": ModelShape(3, 8, 8, 64, 24, gated_ffn=True, num_kv_heads=2, causal=True),
    "mqa": ModelShape(2, 4, 8, 32, 16, gated_ffn=True, num_kv_heads=1, causal=True),
    "groups of 7": ModelShape(2, 14, 8, 112, 16, gated_ffn=True, num_kv_heads=2, causal=True),
}


@pytest.mark.parametrize("shape_name", list(GQA_SHAPES))
@pytest.mark.parametrize("space_name", list(SEARCH_SPACES))
def test_spaces_on_gqa_shapes_give_only_valid_subnets(shape_name, space_name):
    shape = GQA_SHAPES[shape_name]
    space = get_search_space(space_name, shape)
    rng = np.random.default_rng(0)
    configs = space.initial_design() + [space.sample(rng) for _ in range(200)]
    # What Syne Tune's own searchers draw: samples of the config space's domains.
    state = np.random.RandomState(0)
    configs += [{k: d.sample(random_state=state) for k, d in space.config_space.items()} for _ in range(50)]
    seen_within_group = seen_whole_group = False
    for config in configs:
        subnet = space.to_subnet(config)
        shape.check(subnet)  # raises for an invalid GQA mask
        assert space.from_subnet(subnet) is not None
        assert space.to_subnet(space.from_subnet(subnet)) == subnet
        counts = shape.group_head_counts(subnet.head_mask)
        seen_whole_group |= bool(((counts == 0) & (counts.sum(axis=1, keepdims=True) > 0)).any())
        seen_within_group |= bool(((counts > 0) & (counts < shape.group_size)).any())
    assert space.to_subnet(space.largest()).is_full()
    if space_name != "layer":
        # Both ways of pruning heads are reachable (MQA has one group: nothing to drop whole).
        assert seen_within_group
        assert seen_whole_group or shape.kv_heads == 1


def test_gqa_space_variables():
    shape = GQA_SHAPES["gqa"]
    assert get_search_space("small", shape).variable_names == ["num_layers", "num_kv_groups", "heads_per_group", "num_units"]
    assert get_search_space("medium", shape).num_variables == 9
    assert get_search_space("large", shape).num_variables == 3 * (2 + 4 + 24)
    pow2 = get_search_space("small_pow2", shape)
    assert pow2.value_sets[1].tolist() == [1, 2] and pow2.value_sets[2].tolist() == [1, 2, 4]
    subnet = get_search_space("medium", shape).to_subnet(
        {"num_kv_groups_0": 1, "num_kv_groups_1": 2, "num_kv_groups_2": 0,
         "heads_per_group_0": 4, "heads_per_group_1": 2, "heads_per_group_2": 3,
         "num_units_0": 5, "num_units_1": 0, "num_units_2": 24}
    )
    assert subnet.head_mask.astype(int).tolist() == [
        [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 1, 1, 0, 0], [0] * 8
    ]
    # The large space cannot express groups that keep different heads: refused, not mangled.
    odd = SubNetwork([[1, 0, 0, 0, 0, 1, 0, 0]] * 3, np.ones((3, 24), bool))
    shape.check(odd)
    with pytest.raises(NaspruneError, match="cannot be expressed"):
        get_search_space("large", shape).from_subnet(odd)


def test_spaces_without_gqa_are_unchanged():
    shape = ModelShape.from_config(decoder_config("llama", heads=4, kv_heads=4))
    assert get_search_space("small", shape).variable_names == ["num_layers", "num_heads", "num_units"]
    assert get_search_space("medium", shape).variable_names[0] == "num_heads_0"


# --- counting --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tied", [False, True])
def test_full_count_is_the_model_parameter_count(family, tied):
    model = decoder_model(family, tie_word_embeddings=tied)
    counter = ParameterCounter(model)
    assert counter.total == sum(p.numel() for p in model.parameters())
    assert counter.count(SubNetwork.full(counter.shape)) == counter.total


def test_causal_macs_as_documented():
    t, d, dh, units = 5, 32, 8, 48
    shape = ModelShape(2, 4, dh, d, units, gated_ffn=True, num_kv_heads=2, causal=True)
    head_mask = [[1, 1, 0, 0], [1, 0, 1, 0]]  # layer 0: 2 heads, 1 group; layer 1: 2 heads, 2 groups
    unit_mask = np.zeros((2, units), bool)
    unit_mask[0, :10] = True
    subnet = SubNetwork(head_mask, unit_mask)
    pairs = t * (t + 1) // 2  # 15 query-key pairs, not 25
    per_query_head = t * d * dh + 2 * pairs * dh + t * dh * d
    per_kv_head = 2 * t * d * dh
    expected = 4 * per_query_head + 3 * per_kv_head + 10 * 3 * t * d
    assert count_macs(subnet, shape, t) == expected
    # The same sub-network of a bidirectional model without GQA counts T^2 and K/V per head.
    dense = ModelShape(2, 4, dh, d, units, gated_ffn=True)
    assert count_macs(subnet, dense, t) == 4 * (3 * t * d * dh + 2 * t * t * dh + t * dh * d) + 10 * 3 * t * d


def test_lm_head_macs_count_every_position():
    model = decoder_model("llama")
    assert count_fixed_macs(model, 7) == 7 * 32 * VOCAB
    classifier = decoder_model("llama", task="classification")
    assert count_fixed_macs(classifier, 7) == 32 * 3


# --- rewiring and importance on GQA ----------------------------------------------------------
def test_grouped_importance_order_keeps_groups_whole():
    head = np.array([[0.1, 0.2, 5.0, 0.0, 1.0, 1.0]])  # groups of 3: sums 5.3 and 2.0
    order = importance_order(Importance(head, np.zeros((1, 2))), group_size=3)
    assert order.head.tolist() == [[2, 1, 0, 4, 5, 3]]


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_rewiring_a_gqa_model_keeps_its_function(family):
    model = decoder_model(family, heads=6, kv_heads=2, hidden_size=48)
    supernet = SuperNetwork(model)
    batch = padded_batch(length=7)
    with torch.no_grad():
        before = supernet(**batch)
    rng = np.random.default_rng(3)
    permutation = rewire(model, (rng.random((2, 6)), rng.random((2, 48))))
    assert sorted(permutation.head[0][:3] // 3) == [permutation.head[0][0] // 3] * 3
    with torch.no_grad():
        after = supernet(**batch)
    mask = batch["attention_mask"]
    torch.testing.assert_close(lm_logits_at_tokens(after, mask), lm_logits_at_tokens(before, mask), atol=ATOL, rtol=0)
    split = Permutation(np.array([[0, 3, 1, 2, 4, 5]] * 2), np.tile(np.arange(48), (2, 1)))
    with pytest.raises(NaspruneError, match="between key/value groups"):
        apply_permutation(model, split)


def test_importance_of_a_causal_lm():
    model = decoder_model("llama")
    supernet = SuperNetwork(model)
    batch = padded_batch(length=6)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad(), supernet.scaled(torch.ones(2, 4), torch.ones(2, 48)):
        scaled = supernet(**batch)  # all K/V heads run, each query head scaled by 1
    with torch.no_grad():
        torch.testing.assert_close(scaled, supernet(**batch), atol=ATOL, rtol=0)
    gradients = mask_gradients(supernet, [batch])
    assert gradients.head.shape == (3, 2, 4) and gradients.unit.shape == (3, 2, 48)
    assert np.abs(gradients.head).sum() > 0 and np.abs(gradients.unit).sum() > 0
    # One backward pass over the padded batch gives each example's own gradient (its mean token loss).
    singles = []
    for i in range(3):
        length = int(batch["attention_mask"][i].sum())
        singles.append({k: v[i : i + 1, :length] for k, v in batch.items()})
    alone = mask_gradients(supernet, singles)
    np.testing.assert_allclose(gradients.head, alone.head, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradients.unit, alone.unit, rtol=1e-4, atol=1e-6)


# --- loading ---------------------------------------------------------------------------------
def test_load_causal_lm_and_refuse_a_classifier_for_it(tmp_path):
    from nasprune.supernet import load_hf_model

    decoder_model("qwen3").save_pretrained(tmp_path / "lm")
    loaded = load_hf_model(str(tmp_path / "lm"), task_kind="causal_lm")
    assert SuperNetwork(loaded).task_kind == "causal_lm"
    # An LM checkpoint gets a new classification head.
    assert SuperNetwork(load_hf_model(str(tmp_path / "lm"), num_labels=3)).task_kind == "classification"
    decoder_model("qwen3", task="classification").save_pretrained(tmp_path / "cls")
    with pytest.raises(NaspruneError, match="language-modelling head"):
        load_hf_model(str(tmp_path / "cls"), task_kind="causal_lm")
