"""ModernBERT and DeBERTa-v2/v3 as super-networks: exactness against HF, counting, export, ONNX, CLI.

The tiny configs exercise what differs from BERT: ModernBERT's rotary embeddings, alternating
global and sliding-window layers (a window smaller than the sequence), gated FFN units, pre-norm
layers without biases and its pooling head (first token or mean); DeBERTa's disentangled attention
in its v3 form (shared key/query projections, log-bucketed positions fewer than the sequence's
distances, LayerNorm'ed relative embeddings, no absolute positions) and its v2 form (separate
position projections, absolute positions, token types).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import CLASSIFIER_ANSWER, SENTIMENT_WORDS, load_without_nasprune, random_subnet, write_sentiment_csv
from nasprune.counting import ParameterCounter, count_macs
from nasprune.export import export_onnx, export_subnetwork, load_pruned_model, slice_subnetwork
from nasprune.rewiring import apply_permutation, Permutation
from nasprune.subnet import GATED_FFN_MODEL_TYPES, SubNetwork
from nasprune.supernet import MODES, SuperNetwork, encoder_layers, supported_families

TASKS = ("classification", "regression", "multiple_choice")
ATOL = 1e-5


def tiny_modernbert_config(num_layers: int = 4, pooling: str = "cls", dropout: float = 0.0, **overrides):
    """Hidden 32, 4 heads, 24 gated units; layers alternate global / sliding (window 2 each side)."""
    from transformers import ModernBertConfig

    values = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=64,
        local_attention=4,
        global_attn_every_n_layers=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        classifier_pooling=pooling,
        attention_dropout=dropout,
        mlp_dropout=dropout,
        initializer_range=0.2,  # 10x HF's: tiny random models with HF's init give near-constant logits
    )
    values.update(overrides)
    return ModernBertConfig(**values)


def tiny_modernbert(task: str, pooling: str = "cls", seed: int = 0, **overrides):
    from transformers import ModernBertForMultipleChoice, ModernBertForSequenceClassification

    config = tiny_modernbert_config(pooling=pooling, **overrides)
    config.num_labels = {"classification": 3, "regression": 1}.get(task, 2)
    torch.manual_seed(seed)
    cls = ModernBertForMultipleChoice if task == "multiple_choice" else ModernBertForSequenceClassification
    return cls(config).eval()


#: DeBERTa-v3 (shared position projections, 8 log buckets: distances beyond 4 share embeddings)
#: and DeBERTa-v2 (separate position projections, absolute positions and token types too).
DEBERTA_VARIANTS = {
    "v3": dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8, norm_rel_ebd="layer_norm",
               share_att_key=True, position_biased_input=False, type_vocab_size=0, max_relative_positions=-1),
    "v2": dict(relative_attention=True, pos_att_type="c2p|p2c", share_att_key=False, position_biased_input=True,
               type_vocab_size=2, max_relative_positions=16),
}


def tiny_deberta_config(variant: str, num_layers: int = 3, **overrides):
    from transformers import DebertaV2Config

    values = dict(vocab_size=100, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=4,
                  intermediate_size=48, max_position_embeddings=64, pad_token_id=0, initializer_range=0.2,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **DEBERTA_VARIANTS[variant])
    values.update(overrides)
    return DebertaV2Config(**values)


def tiny_deberta(task: str, variant: str = "v3", seed: int = 0, **overrides):
    from transformers import DebertaV2ForMultipleChoice, DebertaV2ForSequenceClassification

    config = tiny_deberta_config(variant, **overrides)
    config.num_labels = {"classification": 3, "regression": 1}.get(task, 2)
    torch.manual_seed(seed)
    cls = DebertaV2ForMultipleChoice if task == "multiple_choice" else DebertaV2ForSequenceClassification
    return cls(config).eval()


def padded_batch(model, batch: int = 3, seq_len: int = 9, num_choices: int = 2, seed: int = 1) -> dict:
    """Token ids and a padding mask (right padding, one full row); no token types (ModernBERT has none)."""
    generator = torch.Generator().manual_seed(seed)
    multiple_choice = "MultipleChoice" in type(model).__name__
    n = batch * (num_choices if multiple_choice else 1)
    ids = torch.randint(3, model.config.vocab_size, (n, seq_len), generator=generator)
    lengths = torch.randint(2, seq_len + 1, (n,), generator=generator)
    lengths[0] = seq_len
    mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, model.config.pad_token_id)
    lead = (batch, num_choices) if multiple_choice else (batch,)
    return {"input_ids": ids.view(*lead, seq_len), "attention_mask": mask.view(*lead, seq_len)}


def supernet_logits(supernet: SuperNetwork, batch: dict, subnet: SubNetwork | None = None) -> torch.Tensor:
    with torch.no_grad(), supernet.select(subnet):
        return supernet(**batch)


def hf_logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


MODERN_CASES = [(task, pooling) for task in TASKS for pooling in ("cls", "mean")]


@pytest.fixture(params=MODERN_CASES, ids=lambda p: f"{p[0]}-{p[1]}")
def modern(request):
    task, pooling = request.param
    model = tiny_modernbert(task, pooling)
    return model, padded_batch(model)


# ------------------------------------------------------------------------------------------------
# The super-network computes what HF computes
# ------------------------------------------------------------------------------------------------
def test_modernbert_is_a_supported_family():
    assert "modernbert" in supported_families()
    assert "modernbert" in GATED_FFN_MODEL_TYPES


@pytest.mark.parametrize("mode", MODES)
def test_modernbert_full_subnetwork_reproduces_hf_logits(modern, mode):
    model, batch = modern
    supernet = SuperNetwork(model, mode=mode)
    assert supernet.shape.gated_ffn
    torch.testing.assert_close(supernet_logits(supernet, batch), hf_logits(model, batch), atol=ATOL, rtol=0)


def test_modernbert_sliding_window_matters():
    # Guard against a vacuous window: the batch is longer than the window, so changing the window
    # of the HF model changes its logits, and the super-network follows the config it was built on.
    model = tiny_modernbert("classification")
    batch = padded_batch(model, seq_len=12)
    wide = copy.deepcopy(model)
    wide.config.local_attention = 64
    for layer in wide.model.layers:
        if layer.attn.sliding_window is not None:
            layer.attn.sliding_window = 33
    assert not torch.allclose(hf_logits(wide, batch), hf_logits(model, batch), atol=1e-3)
    torch.testing.assert_close(supernet_logits(SuperNetwork(model), batch), hf_logits(model, batch), atol=ATOL, rtol=0)


def _zero_head(model, layer: int, head: int) -> None:
    """Delete a head's contribution from an HF ModernBERT: its columns of the output projection."""
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        model.model.layers[layer].attn.Wo.weight[:, head * head_dim : (head + 1) * head_dim] = 0


def _zero_unit(model, layer: int, unit: int) -> None:
    """Delete a gated unit's contribution: its column of the FFN output projection."""
    with torch.no_grad():
        model.model.layers[layer].mlp.Wo.weight[:, unit] = 0


@pytest.mark.parametrize("mode", MODES)
def test_modernbert_dropping_heads_and_units_equals_deleting_their_weights(mode):
    model = tiny_modernbert("classification", pooling="mean")
    batch = padded_batch(model, seq_len=12)
    subnet = random_subnet(SuperNetwork(model).shape, seed=3, min_keep=1)
    reference = copy.deepcopy(model)
    for layer in range(subnet.num_layers):
        for head in np.flatnonzero(~subnet.head_mask[layer]):
            _zero_head(reference, layer, head)
        for unit in np.flatnonzero(~subnet.unit_mask[layer]):
            _zero_unit(reference, layer, unit)
    got = supernet_logits(SuperNetwork(model, mode=mode), batch, subnet)
    torch.testing.assert_close(got, hf_logits(reference, batch), atol=ATOL, rtol=0)
    assert not torch.allclose(got, hf_logits(model, batch), atol=1e-3)


@pytest.mark.parametrize("layer", [0, 2])
def test_modernbert_empty_layer_is_an_identity(layer):
    # A layer with no heads and no units equals the HF model without that layer (layer 0 included,
    # whose attention has no LayerNorm).
    model = tiny_modernbert("classification")
    batch = padded_batch(model)
    shape = SuperNetwork(model).shape
    heads, units = [4] * 4, [24] * 4
    heads[layer] = units[layer] = 0
    subnet = SubNetwork.from_counts(shape, heads, units)
    reference = copy.deepcopy(model)
    del reference.model.layers[layer]
    for mode in MODES:
        got = supernet_logits(SuperNetwork(model, mode=mode), batch, subnet)
        torch.testing.assert_close(got, hf_logits(reference, batch), atol=ATOL, rtol=0)


def test_modernbert_slice_and_mask_modes_agree_and_gradients_reach_fused_weights():
    model = tiny_modernbert("regression")
    batch = padded_batch(model)
    subnet = random_subnet(SuperNetwork(model).shape, seed=5)
    sliced, masked = SuperNetwork(model, "slice"), SuperNetwork(model, "mask")
    expected = supernet_logits(masked, batch, subnet)
    torch.testing.assert_close(supernet_logits(sliced, batch, subnet), expected, atol=ATOL, rtol=0)
    with sliced.select(subnet):
        sliced(**batch).sum().backward()
    grad = model.model.layers[1].attn.Wqkv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_modernbert_rewiring_moves_gate_and_up_rows_together():
    model = tiny_modernbert("classification")
    batch = padded_batch(model)
    shape = SuperNetwork(model).shape
    rng = np.random.default_rng(0)
    permutation = Permutation(
        np.stack([rng.permutation(shape.num_heads) for _ in range(shape.num_layers)]),
        np.stack([rng.permutation(shape.intermediate_size) for _ in range(shape.num_layers)]),
    )
    before = hf_logits(model, batch)
    apply_permutation(model, permutation)
    torch.testing.assert_close(hf_logits(model, batch), before, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------
# Counting
# ------------------------------------------------------------------------------------------------
def test_modernbert_parameter_and_mac_counts():
    model = tiny_modernbert("classification")
    counter = ParameterCounter(model)
    assert counter.total == sum(p.numel() for p in model.parameters())
    shape = counter.shape
    assert all(modules.ffn_up is not None for modules in encoder_layers(model)) == shape.gated_ffn
    full = SubNetwork.full(shape)
    one_unit_less = np.ones((shape.num_layers, shape.intermediate_size), bool)
    one_unit_less[1, 0] = False
    fewer = SubNetwork(full.head_mask, one_unit_less)
    # A gated unit: a gate row, an up row and an output column, no biases.
    assert counter.count(full) - counter.count(fewer) == 3 * shape.hidden_size
    assert count_macs(full, shape, 10) - count_macs(fewer, shape, 10) == 3 * 10 * shape.hidden_size


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task,pooling", [("classification", "cls"), ("regression", "mean"), ("multiple_choice", "cls")]
)
def test_modernbert_export_is_exact_counted_and_reloads(task, pooling, tmp_path):
    from transformers import AutoConfig

    model = tiny_modernbert(task, pooling)
    batch = padded_batch(model, seq_len=12)
    supernet = SuperNetwork(model)
    counter = ParameterCounter(model)
    # Layer 0 (no attention norm) and layer 2 dropped; non-prefix heads and units elsewhere.
    head_mask = np.array([[0, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
    unit_mask = np.zeros((4, 24), bool)
    unit_mask[1, [0, 5, 7]] = True
    unit_mask[3, 10:] = True
    empty = SubNetwork(np.zeros_like(head_mask), np.zeros_like(unit_mask))
    one_type = SubNetwork.from_counts(supernet.shape, [0, 1, 0, 2], [0, 3, 0, 0])  # sliding layers only
    for subnet in (SubNetwork(head_mask, unit_mask), SubNetwork.full(supernet.shape), empty, one_type):
        pruned = slice_subnetwork(supernet, subnet)
        assert sum(p.numel() for p in pruned.parameters()) == counter.count(subnet)
        expected = supernet_logits(supernet, batch, subnet)
        torch.testing.assert_close(hf_logits(pruned, batch), expected, atol=ATOL, rtol=0)
    out = export_subnetwork(supernet, SubNetwork(head_mask, unit_mask), None, tmp_path / "exported")
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "nasprune_modernbert" and config.source_layers == [1, 3]
    assert config.layer_types == ["sliding_attention", "sliding_attention"]
    reloaded = load_pruned_model(out)
    assert type(reloaded).__module__.startswith("nasprune.pruned")
    torch.testing.assert_close(
        hf_logits(reloaded, batch),
        supernet_logits(supernet, batch, SubNetwork(head_mask, unit_mask)),
        atol=ATOL,
        rtol=0,
    )


# ------------------------------------------------------------------------------------------------
# DeBERTa-v2 / v3
# ------------------------------------------------------------------------------------------------
DEBERTA_CASES = [(task, variant) for task in TASKS for variant in DEBERTA_VARIANTS]


@pytest.fixture(params=DEBERTA_CASES, ids=lambda p: f"{p[0]}-{p[1]}")
def deberta(request):
    task, variant = request.param
    model = tiny_deberta(task, variant)
    batch = padded_batch(model, seq_len=12)
    if model.config.type_vocab_size > 1:  # a sentence pair: the second half is segment 1
        batch["token_type_ids"] = (torch.arange(12) >= 6).long().expand_as(batch["input_ids"]).clone()
    return model, batch


def test_deberta_v2_is_a_supported_family():
    assert "deberta-v2" in supported_families()


@pytest.mark.parametrize("mode", MODES)
def test_deberta_full_subnetwork_reproduces_hf_logits(deberta, mode):
    model, batch = deberta
    supernet = SuperNetwork(model, mode=mode)
    torch.testing.assert_close(supernet_logits(supernet, batch), hf_logits(model, batch), atol=ATOL, rtol=0)


def test_deberta_position_terms_matter():
    # Guard against vacuous position terms: without them the HF model's logits change.
    model = tiny_deberta("classification")
    batch = padded_batch(model, seq_len=12)
    plain = copy.deepcopy(model)
    for layer in plain.deberta.encoder.layer:
        layer.attention.self.pos_att_type = []
    assert not torch.allclose(hf_logits(plain, batch), hf_logits(model, batch), atol=1e-3)


@pytest.mark.parametrize("variant", DEBERTA_VARIANTS)
def test_deberta_dropping_heads_and_units_equals_deleting_their_weights(variant):
    model = tiny_deberta("classification", variant)
    batch = padded_batch(model, seq_len=12)
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, seed=2, min_keep=1)
    reference = copy.deepcopy(model)
    head_dim = supernet.shape.head_dim
    with torch.no_grad():
        for layer, module in enumerate(reference.deberta.encoder.layer):
            for head in np.flatnonzero(~subnet.head_mask[layer]):
                module.attention.output.dense.weight[:, head * head_dim : (head + 1) * head_dim] = 0
            module.output.dense.weight[:, torch.as_tensor(np.flatnonzero(~subnet.unit_mask[layer]))] = 0
    for mode in MODES:
        got = supernet_logits(SuperNetwork(model, mode=mode), batch, subnet)
        torch.testing.assert_close(got, hf_logits(reference, batch), atol=ATOL, rtol=0)
    assert not torch.allclose(got, hf_logits(model, batch), atol=1e-3)


def test_deberta_empty_layer_is_an_identity():
    model = tiny_deberta("regression", "v2")
    batch = padded_batch(model)
    subnet = SubNetwork.from_counts(SuperNetwork(model).shape, [4, 0, 4], [48, 0, 48])
    reference = copy.deepcopy(model)
    del reference.deberta.encoder.layer[1]
    for mode in MODES:
        got = supernet_logits(SuperNetwork(model, mode=mode), batch, subnet)
        torch.testing.assert_close(got, hf_logits(reference, batch), atol=ATOL, rtol=0)


def test_deberta_rewiring_moves_position_projections_with_their_heads():
    model = tiny_deberta("classification", "v2")
    batch = padded_batch(model)
    shape = SuperNetwork(model).shape
    rng = np.random.default_rng(1)
    permutation = Permutation(
        np.stack([rng.permutation(shape.num_heads) for _ in range(shape.num_layers)]),
        np.stack([rng.permutation(shape.intermediate_size) for _ in range(shape.num_layers)]),
    )
    before = hf_logits(model, batch)
    apply_permutation(model, permutation)
    torch.testing.assert_close(hf_logits(model, batch), before, atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", DEBERTA_VARIANTS)
def test_deberta_parameter_and_mac_counts(variant):
    model = tiny_deberta("classification", variant)
    counter = ParameterCounter(model)
    assert counter.total == sum(p.numel() for p in model.parameters())
    shape = counter.shape
    d, dh, separate = shape.hidden_size, shape.head_dim, variant == "v2"
    full = SubNetwork.full(shape)
    one_head_less = np.ones((shape.num_layers, shape.num_heads), bool)
    one_head_less[0, 1] = False
    fewer = SubNetwork(one_head_less, full.unit_mask)
    # Q, K, V rows with biases and output columns; v2 adds its two position projections' rows.
    assert counter.count(full) - counter.count(fewer) == (3 + 2 * separate) * (d * dh + dh) + dh * d
    rows = 16 if variant == "v3" else 32  # 2 x 8 buckets; 2 x max_relative_positions
    assert (shape.position_terms, shape.position_rows) == (2, rows)
    t = 10
    per_head = 3 * t * d * dh + 2 * t * t * dh + t * dh * d + 2 * (rows * d * dh + t * rows * dh)
    assert count_macs(full, shape, t) - count_macs(fewer, shape, t) == per_head


@pytest.mark.parametrize("task,variant", [("classification", "v3"), ("multiple_choice", "v2")])
def test_deberta_export_is_exact_counted_and_reloads(task, variant, tmp_path):
    model = tiny_deberta(task, variant)
    batch = padded_batch(model, seq_len=12)
    supernet = SuperNetwork(model)
    counter = ParameterCounter(model)
    head_mask = np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    unit_mask = np.zeros((3, 48), bool)
    unit_mask[0, [1, 4, 40]] = True
    unit_mask[2, :20] = True
    chosen = SubNetwork(head_mask, unit_mask)
    empty = SubNetwork(np.zeros_like(head_mask), np.zeros_like(unit_mask))
    for subnet in (chosen, SubNetwork.full(supernet.shape), empty):
        pruned = slice_subnetwork(supernet, subnet)
        assert sum(p.numel() for p in pruned.parameters()) == counter.count(subnet)
        expected = supernet_logits(supernet, batch, subnet)
        torch.testing.assert_close(hf_logits(pruned, batch), expected, atol=ATOL, rtol=0)
    out = export_subnetwork(supernet, chosen, None, tmp_path / "exported")
    reloaded = load_pruned_model(out)
    assert type(reloaded).__module__.startswith("nasprune.pruned") and reloaded.config.heads_per_layer == [2, 4]
    torch.testing.assert_close(hf_logits(reloaded, batch), supernet_logits(supernet, batch, chosen), atol=ATOL, rtol=0)


def test_deberta_onnx_matches_torch(tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    model = tiny_deberta("classification", "v3")
    pruned = slice_subnetwork(model, SubNetwork.from_counts(SuperNetwork(model).shape, [1, 0, 4], [0, 9, 48]))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]  # v3: no token types
    # Other sizes than the export example, one with distances beyond the position buckets.
    for batch_size, seq_len in ((3, 13), (1, 5)):
        batch = padded_batch(pruned, batch=batch_size, seq_len=seq_len)
        (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        torch.testing.assert_close(torch.from_numpy(logits), hf_logits(pruned, batch), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------
# Loading without nasprune (both families, one Python start-up)
# ------------------------------------------------------------------------------------------------
def test_exports_load_without_nasprune(tmp_path):
    jobs, expected = [], []
    cases = [
        ("modernbert", "classification", tiny_modernbert("classification", pooling="mean")),
        ("modernbert", "multiple_choice", tiny_modernbert("multiple_choice")),
        ("deberta-v3", "regression", tiny_deberta("regression", "v3")),
        ("deberta-v2", "multiple_choice", tiny_deberta("multiple_choice", "v2")),
    ]
    for name, task, model in cases:
        batch = padded_batch(model)
        supernet = SuperNetwork(model)
        heads, units = [0, 2, 4, 1][: supernet.shape.num_layers], [5, 0, 7, 3][: supernet.shape.num_layers]
        subnet = SubNetwork.from_counts(supernet.shape, heads, units)
        out = export_subnetwork(supernet, subnet, None, tmp_path / f"{name}-{task}")
        jobs.append({"directory": str(out), "task": task, "batch": {k: v.tolist() for k, v in batch.items()}})
        expected.append(supernet_logits(supernet, batch, subnet))
    replies = load_without_nasprune(CLASSIFIER_ANSWER, jobs, tmp_path)
    for reply, logits in zip(replies, expected, strict=True):
        assert reply["module"].startswith("transformers_modules.")
        torch.testing.assert_close(torch.tensor(reply["logits"]), logits, atol=ATOL, rtol=0)


def test_modernbert_onnx_matches_torch(tmp_path):
    # Multiple choice: the choice axis is dynamic too, and the head gathers each row's first token.
    task = "multiple_choice"
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    model = tiny_modernbert(task, pooling="cls")
    pruned = slice_subnetwork(model, SubNetwork.from_counts(SuperNetwork(model).shape, [1, 0, 4, 2], [0, 9, 24, 5]))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_ids", "attention_mask"]  # no token types in ModernBERT
    # Other sizes than the export example, one longer than the sliding window.
    for batch_size, seq_len in ((3, 11), (1, 5)):
        batch = padded_batch(pruned, batch=batch_size, seq_len=seq_len)
        (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        torch.testing.assert_close(torch.from_numpy(logits), hf_logits(pruned, batch), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------
# The command line, end to end
# ------------------------------------------------------------------------------------------------
def _write_tiny_model(path, family: str) -> None:
    """A tiny random classifier of ``family`` and a word-level tokenizer over the sentiment words
    (without token types for ModernBERT, whose tokenizer emits none)."""
    from transformers import BertTokenizerFast, DebertaV2ForSequenceClassification, ModernBertForSequenceClassification

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SENTIMENT_WORDS]
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if family != "modernbert" else [])
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, model_input_names=inputs)
    torch.manual_seed(0)
    if family == "modernbert":
        config = tiny_modernbert_config(num_layers=2, vocab_size=len(vocab), initializer_range=0.02, cls_token_id=2,
                                        sep_token_id=3, bos_token_id=2, eos_token_id=3)
        model = ModernBertForSequenceClassification(config)
    else:
        model = DebertaV2ForSequenceClassification(
            tiny_deberta_config("v3", num_layers=2, vocab_size=len(vocab), initializer_range=0.02)
        )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _run_cli(*args) -> int:
    """The ``nasprune`` command's entry point, in this process: three Python start-ups would cost
    more than the tiny runs themselves."""
    from nasprune.cli import main

    return main(["--quiet", *map(str, args)])


@pytest.mark.parametrize("family", ["modernbert", "deberta-v2"])
def test_cli_trains_searches_and_exports(family, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NASPRUNE_CACHE", str(tmp_path))
    _write_tiny_model(tmp_path / "model", family)
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(tmp_path / f"{split}.csv", n, seed)
    data = ["--train-file", tmp_path / "train.csv", "--validation-file", tmp_path / "valid.csv",
            "--test-file", tmp_path / "test.csv", "--max-seq-length", 12]
    assert _run_cli("train-supernet", "--model", tmp_path / "model", *data, "--epochs", 1, "--batch-size", 16,
                    "--search-space", "medium", "--output-dir", tmp_path / "supernet") == 0
    checkpoint = tmp_path / "supernet" / "epoch-1"
    assert _run_cli("search", "--checkpoint", checkpoint, "--method", "nsga2", "--num-samples", 6,
                    "--output-dir", tmp_path / "search") == 0
    table = pd.read_csv(tmp_path / "search" / "results.csv")
    assert len(table) == 6 and table.loc[0, "relative_params"] == pytest.approx(1.0)
    # The largest network is a Pareto point that no budget below 1 allows: export the best within 99%.
    assert _run_cli("export", "--checkpoint", checkpoint, "--results", tmp_path / "search", "--max-params", 0.99,
                    "--output-dir", tmp_path / "exported", "--onnx") == 0
    exported = load_pruned_model(tmp_path / "exported")
    chosen = table[table["pareto"] & (table["relative_params"] <= 0.99)].sort_values("valid_error").iloc[0]
    assert sum(p.numel() for p in exported.parameters()) == chosen["params"]
    assert (tmp_path / "exported" / "model.onnx").stat().st_size > 0


# ------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------
def _labelled_batches(model, n: int = 2) -> list[dict]:
    batches = []
    for i in range(n):
        batch = padded_batch(model, batch=4, seed=10 + i)
        batch["labels"] = torch.randint(0, model.config.num_labels, (4,), generator=torch.Generator().manual_seed(i))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("family", ["modernbert", "deberta-v2"])
def test_baselines_rfp_without_tuning_and_head_pruning(family):
    from nasprune.baselines import head_pruning, rfp
    from nasprune.errors import NaspruneError

    model = tiny_modernbert("classification") if family == "modernbert" else tiny_deberta("classification", "v2")
    supernet = SuperNetwork(model).eval()
    sample = _labelled_batches(model)
    pruner = rfp.RetrainingFreePruner(supernet, sample, "macs", seq_len=9, tune=False)
    result = pruner.prune(0.6)
    full_macs = count_macs(SubNetwork.full(supernet.shape), supernet.shape, 9)
    assert 0 < count_macs(result.subnet, supernet.shape, 9) <= 0.6 * full_macs
    # Mask tuning's least squares assume BERT's block: refused with the way around it.
    with pytest.raises(NaspruneError, match="--no-mask-tuning"):
        rfp.tune_masks(supernet, result.subnet, sample)
    steps = head_pruning.iterative_head_pruning(supernet, sample, fraction=0.25)
    heads = [int(s.head_mask.sum()) for s in steps]
    assert heads[0] == supernet.shape.num_layers * supernet.shape.num_heads and heads == sorted(heads, reverse=True)


@pytest.mark.parametrize("family", ["modernbert", "deberta-v2"])
def test_fixed_macs_are_those_the_hf_model_computes_outside_its_layers(family):
    from torch import nn

    from nasprune.counting import count_fixed_macs
    from nasprune.supernet import get_adapter

    # DeBERTa with an embedding size below the hidden size: its projection runs on every token.
    model = tiny_modernbert("classification", pooling="mean") if family == "modernbert" else tiny_deberta(
        "classification", "v2", embedding_size=16
    )
    in_layers = {id(m) for m in get_adapter(model.config.model_type).layers(model).modules()}
    measured = []

    def count(module, inputs, output):
        measured.append(module.weight.numel() * inputs[0].numel() // module.in_features)

    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module) not in in_layers:
            module.register_forward_hook(count)
    seq_len = 7
    hf_logits(model, padded_batch(model, batch=1, seq_len=seq_len))
    assert sum(measured) == count_fixed_macs(model, seq_len) > 0


# ------------------------------------------------------------------------------------------------
# Training strategies and search spaces
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["modernbert", "deberta-v2"])
def test_every_strategy_and_space_trains_the_shared_weights(family):
    from nasprune.spaces import SEARCH_SPACES, get_search_space
    from nasprune.training import STRATEGIES, Trainer, TrainingConfig, get_strategy

    model = tiny_modernbert("classification", dropout=0.1) if family == "modernbert" else tiny_deberta(
        "classification", "v3", hidden_dropout_prob=0.1
    )
    supernet = SuperNetwork(model).train()
    batch = _labelled_batches(model, 1)[0]
    for space_name in SEARCH_SPACES:
        space = get_search_space(space_name, supernet.shape)
        for name in STRATEGIES:
            before = [p.detach().clone() for p in model.parameters()]
            config = TrainingConfig(epochs=1, warmup_ratio=0.0, learning_rate=1e-3)  # no warm-up: lr > 0 at once
            trainer = Trainer(supernet, get_strategy(name, space), [batch], config, progress=False)
            loss = trainer.train_step(dict(batch), 0)
            assert math.isfinite(float(loss)), (space_name, name)
            assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), (space_name, name)


def test_modernbert_multiple_choice_reads_the_first_token_after_left_padding():
    model = tiny_modernbert("multiple_choice")
    batch = padded_batch(model)
    # Left padding: each row's first token is where its mask turns 1.
    batch = {k: v.flip(-1) for k, v in batch.items()}
    supernet = SuperNetwork(model)
    torch.testing.assert_close(supernet_logits(supernet, batch), hf_logits(model, batch), atol=ATOL, rtol=0)


def test_deberta_with_a_convolution_layer_is_refused():
    from nasprune.errors import NaspruneError

    with pytest.raises(NaspruneError, match="conv_kernel_size"):
        SuperNetwork(tiny_deberta("classification", "v2", conv_kernel_size=3))
