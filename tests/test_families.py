"""Every model family beyond BERT and RoBERTa, end to end: the super-network runs its sub-networks
exactly as deleting the dropped weights from the HF model would, the counts are those of the
exported model, and the export reloads (with and without nasprune), runs as ONNX and comes out of
the command line.

Adding a family to these tests is one entry in :data:`FAMILIES`: a tiny random config and a
word-level tokenizer over :data:`conftest.SENTIMENT_WORDS`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import (
    CLASSIFIER_ANSWER,
    SENTIMENT_WORDS,
    TASKS,
    load_without_nasprune,
    random_subnet,
    tiny_batch,
    write_sentiment_csv,
)
from nasprune.counting import ParameterCounter, count_fixed_macs
from nasprune.errors import NaspruneError
from nasprune.export import EXPORT_META_FILE, export_onnx, export_subnetwork, slice_subnetwork
from nasprune.rewiring import compute_importance, rewire
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, encoder_layers, get_adapter, head_feature_indices

ATOL = 1e-5
LAYERS = 4


# --- the families: a tiny random config and a tokenizer each --------------------------------------
def _distilbert_config(**overrides):
    from transformers import DistilBertConfig

    values = dict(dim=32, n_heads=4, n_layers=LAYERS, hidden_dim=64, max_position_embeddings=64, pad_token_id=0)
    return DistilBertConfig(**{**values, **overrides})


def _electra_config(**overrides):
    from transformers import ElectraConfig

    # An embedding size below the hidden size, so the embedding projection is in every test.
    values = dict(embedding_size=16, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)
    return ElectraConfig(**{**values, **overrides})


def _xlm_roberta_config(**overrides):
    from transformers import XLMRobertaConfig

    # Positions start after the padding index (two extra slots); one token type, as XLM-R's.
    values = dict(hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=66, type_vocab_size=1, pad_token_id=1)
    return XLMRobertaConfig(**{**values, **overrides})


def _wordpiece_tokenizer(class_name: str) -> Callable[[], Any]:
    def make():
        import transformers

        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SENTIMENT_WORDS]
        return getattr(transformers, class_name)(vocab={word: i for i, word in enumerate(vocab)})

    return make


def _xlm_roberta_tokenizer():
    from transformers import XLMRobertaTokenizerFast

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    return XLMRobertaTokenizerFast(vocab=pieces + [("▁" + w, -1.0) for w in SENTIMENT_WORDS] + [("<mask>", 0.0)])


@dataclass(frozen=True)
class Family:
    config: Callable[..., Any]  # keyword arguments override the tiny defaults
    tokenizer: Callable[[], Any]


FAMILIES = {
    "distilbert": Family(_distilbert_config, _wordpiece_tokenizer("DistilBertTokenizerFast")),
    "electra": Family(_electra_config, _wordpiece_tokenizer("ElectraTokenizerFast")),
    "xlm-roberta": Family(_xlm_roberta_config, _xlm_roberta_tokenizer),
}


def family_model(family: str, task: str, seed: int = 0, **overrides) -> nn.Module:
    """A tiny random HF task model of ``family`` in eval mode (the init scale is 10x HF's, so
    that the logits of a tiny model depend visibly on every head)."""
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    config = FAMILIES[family].config(vocab_size=100, initializer_range=0.2, **overrides)
    if task == "classification":
        config.num_labels = 3
    elif task == "regression":
        config.num_labels, config.problem_type = 1, "regression"
    torch.manual_seed(seed)
    auto = AutoModelForMultipleChoice if task == "multiple_choice" else AutoModelForSequenceClassification
    return auto.from_config(config).eval()


def family_batch(model: nn.Module, **kwargs) -> dict:
    """A padded batch with the inputs the family's tokenizer emits: no token types for DistilBERT
    (none in its config), a single one for XLM-R."""
    batch = tiny_batch(model, **kwargs)
    segments = getattr(model.config, "type_vocab_size", None)
    if not segments:
        del batch["token_type_ids"]
    elif segments == 1:
        batch["token_type_ids"].zero_()
    return batch


FAMILY_TASKS = [(f, t) for f in FAMILIES for t in TASKS]


@pytest.fixture(params=FAMILY_TASKS, ids=lambda p: f"{p[0]}-{p[1]}")
def model_and_batch(request):
    family, task = request.param
    model = family_model(family, task)
    return model, family_batch(model)


def hf_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def run(supernet: SuperNetwork, batch: dict, subnet: SubNetwork | None = None) -> torch.Tensor:
    with torch.no_grad(), supernet.select(subnet):
        return supernet(**batch)


def delete_weights(model: nn.Module, subnet: SubNetwork) -> None:
    """Physically delete the dropped heads' and units' rows and columns from ``model``, in place.

    HF's attention modules infer the number of heads from the width of Q/K/V (transformers 5 no
    longer prunes heads itself), so the HF forward runs the smaller layers as they are.
    """
    head_dim = model.config.hidden_size // model.config.num_attention_heads

    def keep(linear: nn.Linear, index: np.ndarray, dim: int) -> None:
        index = torch.as_tensor(index, dtype=torch.long)
        linear.weight = nn.Parameter(linear.weight.detach().index_select(dim, index))
        if dim == 0 and linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach().index_select(0, index))

    for layer, modules in enumerate(encoder_layers(model)):
        rows = head_feature_indices(subnet.head_indices(layer), head_dim)
        for linear in (modules.query, modules.key, modules.value):
            keep(linear, rows, 0)
        keep(modules.attn_out, rows, 1)
        units = subnet.unit_indices(layer)
        keep(modules.ffn_in, units, 0)
        keep(modules.ffn_out, units, 1)


# --- the super-network against HF ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["slice", "mask"])
def test_full_subnetwork_reproduces_hf_logits(model_and_batch, mode):
    model, batch = model_and_batch
    supernet = SuperNetwork(model, mode=mode)
    expected = hf_logits(model, batch)
    torch.testing.assert_close(run(supernet, batch, SubNetwork.full(supernet.shape)), expected, atol=ATOL, rtol=0)


def test_dropping_heads_and_units_equals_deleting_their_weights(model_and_batch):
    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    for seed in range(2):
        subnet = random_subnet(supernet.shape, seed, min_keep=1)
        smaller = copy.deepcopy(model)
        delete_weights(smaller, subnet)
        assert sum(p.numel() for p in smaller.parameters()) == ParameterCounter(model).count(subnet)
        out = run(supernet, batch, subnet)
        torch.testing.assert_close(out, hf_logits(smaller, batch), atol=ATOL, rtol=0)
        assert not torch.allclose(out, hf_logits(model, batch), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_without_heads_and_units_is_identity(family):
    model = family_model(family, "classification")
    batch = family_batch(model)
    supernet = SuperNetwork(model)
    shape = supernet.shape
    with torch.no_grad(), supernet.select(SubNetwork.from_counts(shape, [0] * LAYERS, [0] * LAYERS)):
        hidden, ext_mask = supernet.embed(**batch)
        assert torch.equal(supernet.encode(hidden, ext_mask), hidden)
    # An empty second layer is the same as deleting that layer from the HF model.
    full_heads, full_units = [shape.num_heads] * LAYERS, [shape.intermediate_size] * LAYERS
    full_heads[1] = full_units[1] = 0
    shallower = copy.deepcopy(model)
    del get_adapter(model.config.model_type).layers(shallower)[1]
    expected = hf_logits(shallower, batch)
    torch.testing.assert_close(
        run(supernet, batch, SubNetwork.from_counts(shape, full_heads, full_units)), expected, atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("family,task", [(f, TASKS[i % len(TASKS)]) for i, f in enumerate(FAMILIES)], ids=lambda v: v)
def test_rewiring_by_importance_keeps_the_function(family, task):
    model = family_model(family, task)
    supernet = SuperNetwork(model).eval()
    batch = family_batch(model, batch=6)
    classes = 2 if task == "multiple_choice" else model.config.num_labels
    generator = torch.Generator().manual_seed(0)
    labels = torch.randn(6, generator=generator) if classes == 1 else torch.randint(0, classes, (6,), generator=generator)
    before = run(supernet, batch)
    importance = compute_importance(supernet, [{**batch, "labels": labels}], regression=task == "regression")
    permutation = rewire(supernet, importance)
    torch.testing.assert_close(run(supernet, batch), before, atol=ATOL, rtol=0)
    assert not np.array_equal(permutation.unit, np.tile(np.arange(64), (LAYERS, 1)))


def test_unsupported_model_type_names_every_family():
    with pytest.raises(NaspruneError, match="supported families: .*distilbert.*electra.*xlm-roberta"):
        get_adapter("albert")


# --- counting and export ---------------------------------------------------------------------------
@pytest.mark.parametrize("family,task", FAMILY_TASKS, ids=lambda v: v)
def test_fixed_macs_are_those_the_hf_model_computes_outside_its_layers(family, task):
    model = family_model(family, task)
    in_layers = {id(m) for m in get_adapter(model.config.model_type).layers(model).modules()}
    measured = []

    def count(module, inputs, output):  # a linear layer's MACs: its weight times the rows it ran on
        measured.append(module.weight.numel() * inputs[0].numel() // module.in_features)

    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module) not in in_layers:
            module.register_forward_hook(count)
    seq_len = 7
    hf_logits(model, family_batch(model, batch=1, num_choices=1, seq_len=seq_len))
    assert sum(measured) == count_fixed_macs(model, seq_len) > 0
    if family == "electra":  # the embedding projection runs on every token
        assert count_fixed_macs(model, seq_len) - count_fixed_macs(model, 1) == (seq_len - 1) * 16 * 32


# --- export ---------------------------------------------------------------------------------------
# Layer 0 keeps both blocks, layer 1 only its FFN, layer 2 only its attention, layer 3 nothing.
MIXED = {"heads": [[0, 2], [], [3], []], "units": [[1, 5, 9], [0, 63], [], []], "num_heads": 4, "intermediate_size": 64}


def test_export_has_the_counted_parameters_and_the_supernets_logits(model_and_batch, tmp_path):
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    model, batch = model_and_batch
    supernet = SuperNetwork(model)
    subnet = SubNetwork.from_dict(MIXED)
    counter = ParameterCounter(model)
    # Everything the model holds is counted: ELECTRA's embedding projection, DistilBERT's
    # pre-classifier and every head are outside the layers, and the counter refuses a model whose
    # layers it cannot explain.
    assert counter.total == sum(p.numel() for p in model.parameters())

    out = export_subnetwork(supernet, subnet, None, tmp_path / "pruned")
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    auto = AutoModelForMultipleChoice if supernet.task_kind == "multiple_choice" else AutoModelForSequenceClassification
    reloaded = auto.from_pretrained(out).eval()
    assert type(reloaded).__module__.startswith("nasprune.pruned")
    assert reloaded.config.heads_per_layer == [2, 0, 1] and reloaded.config.units_per_layer == [3, 2, 0]
    assert sum(p.numel() for p in reloaded.parameters()) == counter.count(subnet) == meta["params"]
    torch.testing.assert_close(hf_logits(reloaded, batch), run(supernet, batch, subnet), atol=ATOL, rtol=0)


def test_exports_load_without_nasprune(tmp_path):
    jobs, expected = [], []
    for index, family in enumerate(FAMILIES):
        task = TASKS[(index + 2) % len(TASKS)]  # a different task for each family
        model = family_model(family, task)
        batch = family_batch(model)
        supernet = SuperNetwork(model)
        subnet = SubNetwork.from_dict(MIXED)
        out = export_subnetwork(supernet, subnet, None, tmp_path / family)
        jobs.append({"directory": str(out), "task": task, "batch": {k: v.tolist() for k, v in batch.items()}})
        expected.append(run(supernet, batch, subnet))
    replies = load_without_nasprune(CLASSIFIER_ANSWER, jobs, tmp_path)
    for reply, logits in zip(replies, expected, strict=True):
        assert reply["module"].startswith("transformers_modules.")
        torch.testing.assert_close(torch.tensor(reply["logits"]), logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_equals_torch(family, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    model = family_model(family, "classification")
    pruned = slice_subnetwork(model, SubNetwork.from_dict(MIXED))
    path = export_onnx(pruned, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # The graph takes what the family's tokenizer gives: token types only where they mean something.
    segments = getattr(model.config, "type_vocab_size", None) or 0
    assert names == ["input_ids", "attention_mask"] + (["token_type_ids"] if segments > 1 else [])
    for batch_size, seq_len in ((3, 9), (1, 5)):
        batch = family_batch(pruned, batch=batch_size, seq_len=seq_len)
        (logits,) = session.run(["logits"], {k: batch[k].numpy() for k in names})
        torch.testing.assert_close(torch.from_numpy(logits), hf_logits(pruned, batch), atol=1e-4, rtol=0)


# --- the command line ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_cli_trains_searches_and_exports(family, tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    import nasprune  # noqa: F401  registers the pruned classes with the Auto classes
    from nasprune.cli import main

    tokenizer = FAMILIES[family].tokenizer()
    config = FAMILIES[family].config(vocab_size=len(tokenizer), num_labels=2)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = []
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(tmp_path / f"{split}.csv", n, seed)
        data += [f"--{'validation' if split == 'valid' else split}-file", str(tmp_path / f"{split}.csv")]

    monkeypatch.chdir(tmp_path)  # search follows the checkpoint to its data files only in here
    supernet_dir, search_dir, export_dir = (str(tmp_path / name) for name in ("supernet", "search", "exported"))
    # Rewired by the importance measured on the saved model (it has a task head), then trained.
    assert main(["--quiet", "train-supernet", "--model", str(tmp_path / "model"), *data, "--max-seq-length", "12",
                 "--epochs", "1", "--batch-size", "16", "--learning-rate", "1e-3", "--rewire", "--rewire-from",
                 str(tmp_path / "model"), "--rewire-examples", "16", "--output-dir", supernet_dir]) == 0
    assert main(["--quiet", "search", "--checkpoint", supernet_dir, "--num-samples", "4",
                 "--output-dir", search_dir]) == 0
    assert main(["--quiet", "export", "--checkpoint", supernet_dir, "--results", search_dir, "--pick", "0",
                 "--output-dir", export_dir]) == 0
    assert main(["--quiet", "baseline", "--method", "rfp", "--checkpoint", supernet_dir, "--budgets", "0.5",
                 "--num-importance-samples", "16", "--output-dir", str(tmp_path / "rfp")]) == 0
    capsys.readouterr()
    rewiring = json.loads((tmp_path / "supernet" / "epoch-1" / "nasprune.json").read_text())["rewiring"]
    assert rewiring["num_examples"] == 16 and sorted(rewiring["head"][0]) == list(range(4))
    rfp = pd.read_csv(tmp_path / "rfp" / "results.csv")
    assert rfp["budget"].tolist() == [1.0, 0.5] and (rfp["relative_macs"] <= rfp["budget"] + 1e-12).all()

    table = pd.read_csv(os.path.join(search_dir, "results.csv"))
    meta = json.loads((tmp_path / "exported" / EXPORT_META_FILE).read_text())
    assert meta["family"] == family and meta["params"] in set(table["params"])
    exported = AutoModelForSequenceClassification.from_pretrained(export_dir)
    assert sum(p.numel() for p in exported.parameters()) == meta["params"]
