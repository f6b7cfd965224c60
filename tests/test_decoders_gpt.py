"""GPT-2 and GPT-NeoX (Pythia) as super-networks: exactness against HF, counting, export, generation.

The tiny configs exercise what differs from the encoders and from Llama: GPT-2's Conv1D weights
([in, out]) and fused ``c_attn``, learned positions and, in one config, attention scaled by the
inverse layer index; GPT-NeoX's head-interleaved fused ``query_key_value``, partial rotary
embeddings, and both its parallel and its sequential residual.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import load_without_nasprune, random_subnet
from nasprune.counting import ParameterCounter
from nasprune.export import EXPORT_META_FILE, export_subnetwork, load_pruned_model, slice_subnetwork
from nasprune.rewiring import Permutation, apply_permutation
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, encoder_layers

VOCAB = 61
PAD = 0
ATOL = 1e-5
TASKS = ("causal_lm", "classification", "regression")


def tiny_config(variant: str):
    """Hidden 16, 4 heads (head size 4), 24 units, 3 layers; dropout 0 so outputs are deterministic."""
    from transformers import GPT2Config, GPTNeoXConfig

    special = dict(vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    if variant.startswith("gpt2"):
        return GPT2Config(
            n_positions=32, n_embd=16, n_layer=3, n_head=4, n_inner=24, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=variant == "gpt2-inverse-scale", **special,
        )
    return GPTNeoXConfig(
        max_position_embeddings=32, hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=24, rotary_pct=0.5, use_parallel_residual=variant == "gpt_neox", **special,
    )


VARIANTS = ("gpt2", "gpt2-inverse-scale", "gpt_neox", "gpt_neox-sequential")


def tiny_model(variant: str, task: str, seed: int = 0):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config(variant)
    if task == "causal_lm":
        return AutoModelForCausalLM.from_config(config).eval()
    config.num_labels = 1 if task == "regression" else 3
    if task == "regression":
        config.problem_type = "regression"
    return AutoModelForSequenceClassification.from_config(config).eval()


def padded_batch(batch: int = 3, seq_len: int = 9, seed: int = 1) -> dict:
    """Right-padded token ids (never the padding id inside a sequence) and their mask."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (batch, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch):
        attention_mask[row, seq_len - 2 * row :] = 0
    input_ids[attention_mask == 0] = PAD
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def token_logits(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """LM logits at the tokens only (a padding position's output means nothing); others as they are."""
    return logits[batch["attention_mask"].bool()] if logits.dim() == 3 else logits


def supernet_logits(supernet: SuperNetwork, batch: dict, subnet: SubNetwork | None = None) -> torch.Tensor:
    with torch.inference_mode(), supernet.select(subnet):
        return supernet(**batch)


def hf_logits(model, batch: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch).logits


@pytest.fixture(params=[(v, t) for v in VARIANTS for t in TASKS], ids=lambda p: f"{p[0]}-{p[1]}")
def variant_task(request) -> tuple[str, str]:
    return request.param


@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_full_subnetwork_reproduces_hf(variant_task, mode):
    variant, task = variant_task
    model = tiny_model(variant, task)
    supernet = SuperNetwork(model, mode=mode)
    assert supernet.task_kind == task
    assert supernet.shape.causal
    batch = padded_batch()
    expected = token_logits(hf_logits(model, batch), batch)
    torch.testing.assert_close(token_logits(supernet_logits(supernet, batch), batch), expected, atol=ATOL, rtol=0)
    # Without a padding mask the encoder takes SDPA's causal path (or the attend hook's).
    single = {"input_ids": batch["input_ids"][:1]}
    torch.testing.assert_close(supernet_logits(supernet, single), hf_logits(model, single), atol=ATOL, rtol=0)


def _delete_by_zeroing(model, subnet: SubNetwork):
    """A copy of ``model`` whose pruned heads and units contribute nothing: their output-projection
    columns are zeroed, in HF's own weights (Conv1D rows for GPT-2)."""
    import copy

    pruned = copy.deepcopy(model)
    head_dim = pruned.config.hidden_size // pruned.config.num_attention_heads
    with torch.no_grad():
        for layer, modules in enumerate(encoder_layers(pruned)):
            for head in np.flatnonzero(~subnet.head_mask[layer]):
                modules.attn_out.weight[:, head * head_dim : (head + 1) * head_dim] = 0
            modules.ffn_out.weight[:, torch.as_tensor(np.flatnonzero(~subnet.unit_mask[layer]))] = 0
    return pruned


def test_dropping_heads_and_units_equals_deleting_them(variant_task):
    variant, task = variant_task
    model = tiny_model(variant, task)
    supernet = SuperNetwork(model)
    # At least one head and unit per layer: a block with none is skipped whole (bias and norm too),
    # which zeroed weights cannot express; the export test covers that case.
    subnet = random_subnet(supernet.shape, seed=3, min_keep=1)
    batch = padded_batch()
    expected = token_logits(hf_logits(_delete_by_zeroing(model, subnet), batch), batch)
    for mode in ("slice", "mask"):
        supernet.mode = mode
        got = token_logits(supernet_logits(supernet, batch, subnet), batch)
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def _subnet_dropping_a_layer(shape) -> SubNetwork:
    """Scattered heads and units; layer 1 dropped entirely and layer 2 without attention."""
    subnet = random_subnet(shape, seed=5, min_keep=1)
    head_mask, unit_mask = subnet.head_mask.copy(), subnet.unit_mask.copy()
    head_mask[1], unit_mask[1], head_mask[2] = False, False, False
    return SubNetwork(head_mask, unit_mask)


def test_slice_counts_and_logits_match_the_supernetwork(variant_task):
    variant, task = variant_task
    model = tiny_model(variant, task)
    supernet = SuperNetwork(model)
    counter = ParameterCounter(supernet)
    assert counter.count(SubNetwork.full(supernet.shape)) == sum(p.numel() for p in model.parameters())
    batch = padded_batch()
    for subnet in (_subnet_dropping_a_layer(supernet.shape), random_subnet(supernet.shape, seed=7)):
        pruned = slice_subnetwork(supernet, subnet)
        assert pruned.config.num_hidden_layers == len(subnet.kept_layers)
        assert counter.count(subnet) == sum(p.numel() for p in pruned.parameters())
        torch.testing.assert_close(
            token_logits(hf_logits(pruned, batch), batch),
            token_logits(supernet_logits(supernet, batch, subnet), batch),
            atol=ATOL,
            rtol=0,
        )


def _greedy_without_cache(supernet: SuperNetwork, subnet: SubNetwork, prompt: torch.Tensor, steps: int):
    """Greedy decoding by re-running the whole sequence each step: what a KV cache must reproduce."""
    tokens = prompt
    for _ in range(steps):
        logits = supernet_logits(supernet, {"input_ids": tokens}, subnet)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
    return tokens


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_reloads_equals_and_generates(tmp_path, variant):
    from transformers import AutoModelForCausalLM

    supernet = SuperNetwork(tiny_model(variant, "causal_lm"))
    subnet = _subnet_dropping_a_layer(supernet.shape)
    out = export_subnetwork(supernet, subnet, None, tmp_path / "lm")
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    assert meta["format"] == "nasprune" and meta["task_kind"] == "causal_lm"
    assert meta["params"] == ParameterCounter(supernet).count(subnet)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(model).__name__.startswith("Pruned") and type(model).__name__.endswith("ForCausalLM")
    assert type(load_pruned_model(out)) is type(model)
    batch = padded_batch()
    torch.testing.assert_close(
        token_logits(hf_logits(model, batch), batch),
        token_logits(supernet_logits(supernet, batch, subnet), batch),
        atol=ATOL,
        rtol=0,
    )
    prompt = batch["input_ids"][:1, :5]
    generated = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=PAD)
    assert torch.equal(generated, _greedy_without_cache(supernet, subnet, prompt, 6))


@pytest.mark.parametrize("variant", ["gpt2", "gpt_neox"])
def test_left_padded_generation_matches_unpadded(tmp_path, variant):
    # A padded batch generates what each prompt generates alone: positions and the cache's
    # padding mask are right in the pruned model (here the full one, without dropped layers).
    supernet = SuperNetwork(tiny_model(variant, "causal_lm"))
    subnet = random_subnet(supernet.shape, seed=11, min_keep=1)
    model = slice_subnetwork(supernet, subnet)
    prompts = [torch.tensor([[5, 9, 14, 3, 22]]), torch.tensor([[7, 30, 8]])]
    alone = [model.generate(p, max_new_tokens=4, do_sample=False, pad_token_id=PAD)[0, -4:] for p in prompts]
    ids = torch.tensor([[5, 9, 14, 3, 22], [PAD, PAD, 7, 30, 8]])
    mask = (ids != PAD).long()
    together = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=PAD)
    assert torch.equal(together[:, -4:], torch.stack(alone))


@pytest.mark.parametrize("variant", ["gpt2", "gpt_neox"])
@pytest.mark.parametrize("task", ["causal_lm", "classification"])
def test_uniform_subnetwork_exports_a_stock_model(tmp_path, variant, task):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    supernet = SuperNetwork(tiny_model(variant, task))
    # All heads and 10 scattered units in layers 0 and 2; layer 1 dropped.
    head_mask = np.ones((3, 4), bool)
    head_mask[1] = False
    unit_mask = np.zeros((3, 24), bool)
    unit_mask[0, ::3] = unit_mask[2, 1::3] = True
    subnet = SubNetwork(head_mask, unit_mask)
    out = export_subnetwork(supernet, subnet, None, tmp_path / "stock")
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    config = json.loads((out / "config.json").read_text())
    assert meta["format"] == "stock" and config["model_type"] == variant and "auto_map" not in config
    assert not any(name.endswith(".py") for name in os.listdir(out))
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    model = auto.from_pretrained(out).eval()
    assert type(model).__module__.startswith(f"transformers.models.{variant}.")
    assert model.config.num_hidden_layers == 2
    assert sum(p.numel() for p in model.parameters()) == ParameterCounter(supernet).count(subnet)
    batch = padded_batch()
    torch.testing.assert_close(
        token_logits(hf_logits(model, batch), batch),
        token_logits(supernet_logits(supernet, batch, subnet), batch),
        atol=ATOL,
        rtol=0,
    )


def test_inverse_layer_scaling_keeps_its_source_layers(tmp_path):
    # Each GPT-2 layer's scale follows its index in the source model, so dropping layer 1 cannot be
    # a stock GPT-2 (which would scale old layer 2 as layer 1): the export stays nasprune's.
    supernet = SuperNetwork(tiny_model("gpt2-inverse-scale", "causal_lm"))
    head_mask, unit_mask = np.ones((3, 4), bool), np.ones((3, 24), bool)
    head_mask[1], unit_mask[1] = False, False
    subnet = SubNetwork(head_mask, unit_mask)
    out = export_subnetwork(supernet, subnet, None, tmp_path / "kept")
    assert json.loads((out / EXPORT_META_FILE).read_text())["format"] == "nasprune"
    config = json.loads((out / "config.json").read_text())
    assert config["source_layers"] == [0, 2]
    batch = padded_batch()
    torch.testing.assert_close(
        token_logits(hf_logits(load_pruned_model(out), batch), batch),
        token_logits(supernet_logits(supernet, batch, subnet), batch),
        atol=ATOL,
        rtol=0,
    )


@pytest.mark.parametrize("variant", ["gpt2", "gpt_neox"])
def test_rewiring_keeps_the_function_and_moves_heads(variant):
    model = tiny_model(variant, "causal_lm")
    supernet = SuperNetwork(model)
    rng = np.random.default_rng(0)
    order = Permutation(
        np.stack([rng.permutation(4) for _ in range(3)]), np.stack([rng.permutation(24) for _ in range(3)])
    )
    batch = padded_batch()
    before_full = token_logits(supernet_logits(supernet, batch), batch)
    # The sub-network of the heads and units that the first two positions will hold after rewiring.
    head_mask, unit_mask = np.zeros((3, 4), bool), np.zeros((3, 24), bool)
    for layer in range(3):
        head_mask[layer, order.head[layer, :2]] = True
        unit_mask[layer, order.unit[layer, :10]] = True
    before_sub = token_logits(supernet_logits(supernet, batch, SubNetwork(head_mask, unit_mask)), batch)
    apply_permutation(supernet, order)
    torch.testing.assert_close(token_logits(supernet_logits(supernet, batch), batch), before_full, atol=ATOL, rtol=0)
    prefix = SubNetwork.from_counts(supernet.shape, [2, 2, 2], [10, 10, 10])
    after_sub = token_logits(supernet_logits(supernet, batch, prefix), batch)
    torch.testing.assert_close(after_sub, before_sub, atol=ATOL, rtol=0)
    # And the rewired HF model itself computes what it did (its fused weights were permuted, not copies).
    torch.testing.assert_close(token_logits(hf_logits(model, batch), batch), before_full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", ["gpt2", "gpt_neox"])
def test_mask_scales_fold_into_the_weights(variant):
    # Folding writes through attn_out / ffn_out: for GPT-2 into the Conv1D parameters via their views.
    from nasprune.scales import MaskScales, apply_scales

    model = tiny_model(variant, "causal_lm")
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, seed=4, min_keep=1)
    rng = np.random.default_rng(0)
    scales = MaskScales(subnet.head_mask * rng.uniform(0.5, 1.5, subnet.head_mask.shape),
                        subnet.unit_mask * rng.uniform(0.5, 1.5, subnet.unit_mask.shape))
    batch = padded_batch()
    head, unit = (torch.tensor(s, dtype=torch.float32) for s in (scales.head, scales.unit))
    with torch.inference_mode(), supernet.scaled(head, unit, subnet):
        expected = supernet(**batch)
    folded = SuperNetwork(apply_scales(model, subnet, scales))
    got = supernet_logits(folded, batch, subnet)
    torch.testing.assert_close(token_logits(got, batch), token_logits(expected, batch), atol=ATOL, rtol=0)


def test_pruned_language_model_runs_as_onnx(tmp_path):
    # GPT-NeoX: partial rotary embeddings and the parallel residual traced; one family, as ONNX export is slow.
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    from nasprune.export import export_onnx

    supernet = SuperNetwork(tiny_model("gpt_neox", "causal_lm"))
    pruned = slice_subnetwork(supernet, _subnet_dropping_a_layer(supernet.shape))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    batch = padded_batch(batch=2, seq_len=11)  # another shape than the export's example
    (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
    torch.testing.assert_close(
        token_logits(torch.from_numpy(logits), batch), token_logits(hf_logits(pruned, batch), batch), atol=1e-4, rtol=0
    )


def test_cross_attention_gpt2_is_refused():
    from transformers import GPT2LMHeadModel

    from nasprune.errors import NaspruneError

    config = tiny_config("gpt2")
    config.add_cross_attention = True
    with pytest.raises(NaspruneError, match="cross-attention"):
        SuperNetwork(GPT2LMHeadModel(config))


def test_supernetwork_trains_the_shared_weights():
    # Gradients reach the HF parameters through the Conv1D and head-interleaved views.
    for variant in ("gpt2", "gpt_neox"):
        model = tiny_model(variant, "causal_lm")
        supernet = SuperNetwork(model)
        batch = padded_batch()
        subnet = random_subnet(supernet.shape, seed=2, min_keep=1)
        with supernet.select(subnet):
            supernet(**batch).float().pow(2).mean().backward()
        modules = encoder_layers(model)[0]
        fused = modules.query.conv if variant == "gpt2" else modules.query.linear
        assert fused.weight.grad is not None and fused.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Loading without nasprune (both families, causal LM and classification, one Python start-up)
# ------------------------------------------------------------------------------------------------
_ANSWER = """
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

def answer(job):
    auto = AutoModelForCausalLM if job["task"] == "causal_lm" else AutoModelForSequenceClassification
    model = auto.from_pretrained(job["directory"], trust_remote_code=True).eval()
    batch = {k: torch.tensor(v) for k, v in job["batch"].items()}
    with torch.inference_mode():
        logits = model(**batch).logits
    base = AutoModel.from_pretrained(job["directory"], trust_remote_code=True)
    reply = {"module": type(model).__module__, "logits": logits.tolist(), "base": type(base).__name__}
    if job["task"] == "causal_lm":
        prompt = batch["input_ids"][:1, :4]
        reply["generated"] = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0).tolist()
    return reply
"""


def test_exports_load_without_nasprune(tmp_path):
    jobs, expected = [], []
    for variant in ("gpt2", "gpt_neox"):
        for task in ("causal_lm", "classification"):
            supernet = SuperNetwork(tiny_model(variant, task))
            subnet = _subnet_dropping_a_layer(supernet.shape)
            out = export_subnetwork(supernet, subnet, None, tmp_path / f"{variant}-{task}")
            batch = padded_batch()
            jobs.append({"directory": str(out), "task": task, "batch": {k: v.tolist() for k, v in batch.items()}})
            generated = None
            if task == "causal_lm":
                generated = _greedy_without_cache(supernet, subnet, batch["input_ids"][:1, :4], 3)
            expected.append((supernet_logits(supernet, batch, subnet), batch, generated))
    replies = load_without_nasprune(_ANSWER, jobs, tmp_path)
    for reply, (logits, batch, generated) in zip(replies, expected, strict=True):
        assert reply["module"].startswith("transformers_modules.")
        assert reply["base"] in ("PrunedGPT2Model", "PrunedGPTNeoXModel")  # AutoModel: the decoder alone
        torch.testing.assert_close(
            token_logits(torch.tensor(reply["logits"]), batch), token_logits(logits, batch), atol=ATOL, rtol=0
        )
        if generated is not None:
            assert torch.equal(torch.tensor(reply["generated"]), generated)
