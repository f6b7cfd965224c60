"""Exporting Llama-family decoders (Llama, Mistral, Qwen2, Qwen3) as physically smaller models.

Tiny random models made here: hidden 32, 4 query heads over 2 key/value heads (head_dim 8), 48
SwiGLU units, 4 layers, vocabulary 100. Each family is configured to exercise what sets it apart:
Llama with biases on every projection, Mistral with a 4-token sliding window, Qwen2 with its q/k/v
biases and tied embeddings, Qwen3 with per-head q/k norms.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import load_without_nasprune
import nasprune  # noqa: F401  (registers the pruned classes with the Auto classes)
from nasprune.counting import ParameterCounter
from nasprune.export import EXPORT_META_FILE, export_subnetwork, load_pruned_model, slice_subnetwork
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
ATOL = 1e-5
VOCAB = 100


def tiny_decoder(family: str, task: str = "causal_lm", seed: int = 0, num_layers: int = 4):
    """A tiny random HF decoder in eval mode, its weights jittered so that no bias is 0 and no norm 1."""
    import transformers

    prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[family]
    extra = {
        "llama": dict(attention_bias=True, mlp_bias=True),
        "mistral": dict(sliding_window=4),
        "qwen2": dict(tie_word_embeddings=True),
        "qwen3": dict(attention_bias=True),
    }[family]
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        intermediate_size=48, num_hidden_layers=num_layers, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=None, eos_token_id=None, num_labels=3, initializer_range=0.2, **extra,
    )
    suffix = "ForCausalLM" if task == "causal_lm" else "ForSequenceClassification"
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}{suffix}")(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def uneven_subnet(shape: ModelShape) -> SubNetwork:
    """Layer 0: units only (so the first cache slot is layer 1's); layer 1: one whole key/value group,
    no units; layer 2: nothing (dropped); layer 3: one query head in each group and 20 scattered units."""
    heads = np.zeros((shape.num_layers, shape.num_heads), bool)
    units = np.zeros((shape.num_layers, shape.intermediate_size), bool)
    units[0, :10] = True
    heads[1, [0, 1]] = True
    heads[3, [1, 3]] = True
    units[3, np.random.default_rng(0).choice(shape.intermediate_size, 20, replace=False)] = True
    return SubNetwork(heads, units)


def supernet_logits(supernet: SuperNetwork, subnet: SubNetwork, **batch) -> torch.Tensor:
    with torch.inference_mode(), supernet.select(subnet):
        return supernet(**batch)


def greedy(supernet: SuperNetwork, subnet: SubNetwork, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding by the super-network, recomputing the whole sequence each step (no cache)."""
    ids = prompt
    for _ in range(new_tokens):
        next_token = supernet_logits(supernet, subnet, input_ids=ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=1)
    return ids


def padded_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    """Two right-padded sequences of lengths 9 and 6 (pad id 0 never occurs as a real token)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


# ------------------------------------------------------------------------------------------------
# The pruned classes alone
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_full_widths_equal_hf_in_forward_and_left_padded_generation(family):
    """With every head and unit, the pruned class holding HF's weights is HF's model: the same
    logits, and the same tokens from ``generate`` on a left-padded batch (cache and padding mask)."""
    from nasprune.pruned import PRUNED_FAMILIES

    hf = tiny_decoder(family)
    values = {k: v for k, v in hf.config.to_dict().items() if k not in ("model_type", "architectures")}
    pruned = PRUNED_FAMILIES[family].causal_lm(PRUNED_FAMILIES[family].config(**values)).eval()
    pruned.load_state_dict(hf.state_dict(), strict=True)
    ids = torch.randint(1, VOCAB, (2, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    ids[0, :3], mask[0, :3] = 0, 0  # left padding, as for generation
    with torch.inference_mode():
        torch.testing.assert_close(pruned(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)
        expected = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        generated = pruned.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert generated.tolist() == expected.tolist()


def test_pruned_config_refuses_widths_that_cannot_run():
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    from nasprune.pruned import PrunedLlamaConfig, PrunedQwen2Config

    common = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  intermediate_size=48, num_hidden_layers=2, vocab_size=VOCAB)
    with pytest.raises(Invalid, match="same number of query heads"):
        PrunedLlamaConfig(**common, heads_per_layer=[3, 4], kv_heads_per_layer=[2, 2])
    with pytest.raises(Invalid, match="units_per_layer"):
        PrunedLlamaConfig(**common, units_per_layer=[48])
    # The first cache slot belongs to layer 1 (layer 0 has no heads), but the cache makes it a
    # sliding-window slot because layer 0 is a sliding-window layer: layer 1 would lose tokens.
    with pytest.raises(Invalid, match="cache slot 0"):
        PrunedQwen2Config(**common, use_sliding_window=True, sliding_window=4,
                          layer_types=["sliding_attention", "full_attention"],
                          heads_per_layer=[0, 4], kv_heads_per_layer=[0, 2])


# ------------------------------------------------------------------------------------------------
# Slicing and exporting: equal to the super-network
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_export_equals_supernet_reloads_and_generates(family, tmp_path):
    hf = tiny_decoder(family)
    supernet = SuperNetwork(hf)
    subnet = uneven_subnet(supernet.shape)
    out = export_subnetwork(supernet, subnet, None, tmp_path / family, macs_seq_length=16)

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == f"nasprune_{family}"
    assert config["heads_per_layer"] == [0, 2, 2] and config["kv_heads_per_layer"] == [0, 1, 2]
    assert config["units_per_layer"] == [10, 0, 20]
    assert {"configuration_llama.py", "modeling_llama.py", "modeling_decoder.py"} <= set(os.listdir(out))
    assert config["auto_map"]["AutoModelForCausalLM"] == f"modeling_llama.Pruned{type(hf).__name__}"
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    assert meta["format"] == "nasprune" and meta["task_kind"] == "causal_lm" and meta["kept_layers"] == [0, 1, 3]

    from transformers import AutoModelForCausalLM

    for model in (load_pruned_model(out), AutoModelForCausalLM.from_pretrained(out)):
        assert type(model).__module__ == "nasprune.pruned.modeling_llama"
        # Exact counts: the exported parameters are the counter's, and fewer than the source's.
        assert meta["params"] == sum(p.numel() for p in model.parameters()) == ParameterCounter(hf).count(subnet)
        assert meta["params"] < ParameterCounter(hf).total
        batch = padded_batch()
        with torch.inference_mode():
            logits = model(**batch).logits
        expected = supernet_logits(supernet, subnet, **batch)
        kept = batch["attention_mask"].bool()
        torch.testing.assert_close(logits[kept], expected[kept], atol=ATOL, rtol=0)

    # Forward with the cache (no position ids given): the cached length comes from the first layer
    # that has attention, and the new tokens' logits are those of the whole sequence at once.
    prompt = torch.randint(1, VOCAB, (1, 7), generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        first = model(input_ids=prompt[:, :4], use_cache=True)
        cache = first.cache if getattr(first, "cache", None) is not None else first.past_key_values
        steps = model(input_ids=prompt[:, 4:], cache=cache, use_cache=True).logits
        torch.testing.assert_close(steps, model(input_ids=prompt).logits[:, 4:], atol=ATOL, rtol=0)

    # generate (with the key/value cache) continues as the super-network's greedy decoding does;
    # 5 + 6 tokens run past Mistral's 4-token window.
    prompt = torch.randint(1, VOCAB, (1, 5), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        generated = model.generate(input_ids=prompt, max_new_tokens=6, do_sample=False)
    assert generated.tolist() == greedy(supernet, subnet, prompt, 6).tolist()
    assert "pipeline_tag: \"text-generation\"" in (out / "README.md").read_text()


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_sequence_classification_export_equals_supernet(family, tmp_path):
    hf = tiny_decoder(family, task="classification")
    supernet = SuperNetwork(hf)
    subnet = uneven_subnet(supernet.shape)
    out = export_subnetwork(supernet, subnet, None, tmp_path / family)
    model = load_pruned_model(out)
    assert type(model).__name__ == f"Pruned{type(hf).__name__}"
    assert sum(p.numel() for p in model.parameters()) == ParameterCounter(hf).count(subnet)
    batch = padded_batch()
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, supernet_logits(supernet, subnet, **batch),
                                   atol=ATOL, rtol=0)
    assert "pipeline_tag: \"text-classification\"" in (out / "README.md").read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_subnet_exports_a_stock_model(family, tmp_path):
    """Every kept layer keeps one key/value group of 2 query heads and 20 units (one layer dropped):
    a stock config of the family with explicit head_dim, loaded by stock classes without custom code."""
    import transformers

    hf = tiny_decoder(family)
    supernet = SuperNetwork(hf)
    shape = supernet.shape
    subnet = SubNetwork.from_group_counts(shape, [1, 1, 0, 1], [2, 2, 0, 2], [20, 20, 0, 20])
    out = export_subnetwork(supernet, subnet, None, tmp_path / family)

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and "auto_map" not in config
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"],
            config["head_dim"], config["intermediate_size"]) == (3, 2, 1, 8, 20)
    assert not any(name.endswith(".py") for name in os.listdir(out))
    assert json.loads((out / EXPORT_META_FILE).read_text())["format"] == "stock"
    stock_class = type(hf)  # e.g. transformers.LlamaForCausalLM
    model = stock_class.from_pretrained(out).eval()
    assert type(model) is getattr(transformers, type(hf).__name__)
    assert sum(p.numel() for p in model.parameters()) == ParameterCounter(hf).count(subnet)
    batch = padded_batch()
    with torch.inference_mode():
        logits = model(**batch).logits
    kept = batch["attention_mask"].bool()
    torch.testing.assert_close(logits[kept], supernet_logits(supernet, subnet, **batch)[kept], atol=ATOL, rtol=0)
    prompt = torch.randint(1, VOCAB, (1, 5), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        generated = model.generate(input_ids=prompt, max_new_tokens=4, do_sample=False)
    assert generated.tolist() == greedy(supernet, subnet, prompt, 4).tolist()


def test_slice_keeps_the_source_untouched_and_follows_kept_heads():
    """Slicing copies rows: the source's weights stay, and the pruned q/k rows are the kept heads'."""
    hf = tiny_decoder("qwen3")
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    subnet = uneven_subnet(ModelShape.from_config(hf.config))
    pruned = slice_subnetwork(hf, subnet)
    for key, value in hf.state_dict().items():
        assert torch.equal(value, before[key]), key
    # Pruned layer 2 is source layer 3: query heads 1 and 3 (rows 8-15, 24-31), both key/value heads.
    q_rows = torch.cat([torch.arange(8, 16), torch.arange(24, 32)])
    source, cut = hf.model.layers, pruned.model.layers
    assert torch.equal(cut[2].self_attn.q_proj.weight, source[3].self_attn.q_proj.weight[q_rows])
    assert torch.equal(cut[1].self_attn.k_proj.weight, source[1].self_attn.k_proj.weight[:8])
    assert pruned.model.layers[0].self_attn is None and pruned.model.layers[1].mlp is None


def test_onnx_graph_of_a_pruned_decoder_matches_torch(tmp_path):
    """The pruned decoder traces (no data-dependent branch on the padding mask while exporting) and
    the graph gives its logits at another batch size and length."""
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    onnxruntime = pytest.importorskip("onnxruntime")
    from nasprune.export import export_onnx

    hf = tiny_decoder("qwen3")
    pruned = slice_subnetwork(hf, uneven_subnet(ModelShape.from_config(hf.config)))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path))
    unpadded = {"input_ids": torch.randint(1, VOCAB, (3, 13), generator=torch.Generator().manual_seed(7))}
    unpadded["attention_mask"] = torch.ones_like(unpadded["input_ids"])
    for batch in (padded_batch(), unpadded):
        (logits,) = session.run(None, {k: v.numpy() for k, v in batch.items()})
        with torch.inference_mode():
            expected = pruned(**batch).logits
        kept = batch["attention_mask"].bool()
        torch.testing.assert_close(torch.from_numpy(logits)[kept], expected[kept], atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------
# trust_remote_code where nasprune cannot be imported
# ------------------------------------------------------------------------------------------------
_ANSWER = """
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

def answer(job):
    auto = AutoModelForCausalLM if job["task"] == "causal_lm" else AutoModelForSequenceClassification
    model = auto.from_pretrained(job["directory"], trust_remote_code=True).eval()
    batch = {k: torch.tensor(v) for k, v in job["batch"].items()}
    reply = {"module": type(model).__module__}
    with torch.inference_mode():
        reply["logits"] = model(**batch).logits.tolist()
        if job["task"] == "causal_lm":
            prompt = torch.tensor(job["prompt"])
            reply["generated"] = model.generate(input_ids=prompt, max_new_tokens=5, do_sample=False).tolist()
    return reply
"""


def test_trust_remote_code_loads_and_generates_without_nasprune(tmp_path):
    jobs, expected = [], []
    batch = padded_batch()
    prompt = torch.randint(1, VOCAB, (1, 4), generator=torch.Generator().manual_seed(5))
    for family, task in (("mistral", "causal_lm"), ("qwen3", "causal_lm"), ("qwen2", "classification")):
        hf = tiny_decoder(family, task=task)
        supernet = SuperNetwork(hf)
        subnet = uneven_subnet(supernet.shape)
        out = export_subnetwork(supernet, subnet, None, tmp_path / f"{family}-{task}")
        jobs.append({"directory": str(out), "task": task, "prompt": prompt.tolist(),
                     "batch": {k: v.tolist() for k, v in batch.items()}})
        expected.append((supernet_logits(supernet, subnet, **batch),
                         greedy(supernet, subnet, prompt, 5) if task == "causal_lm" else None))
    replies = load_without_nasprune(_ANSWER, jobs, tmp_path)
    kept = batch["attention_mask"].bool()
    for reply, (logits, generated), job in zip(replies, expected, jobs, strict=True):
        assert reply["module"].startswith("transformers_modules.")
        got = torch.tensor(reply["logits"])
        if job["task"] == "causal_lm":
            torch.testing.assert_close(got[kept], logits[kept], atol=ATOL, rtol=0)
            assert reply["generated"] == generated.tolist()
        else:
            torch.testing.assert_close(got, logits, atol=ATOL, rtol=0)
