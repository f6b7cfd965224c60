"""``nasprune export`` reports what the exported weights do: measured errors, folded RFP mask values,
results checked against their checkpoint, every tokenizer input in the ONNX graph, and label names."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_sentiment_csv, write_tiny_bert

from nasprune.errors import NaspruneError
from nasprune.export import EXPORT_META_FILE, export_onnx, load_pruned_model, onnx_input_names, slice_subnetwork
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A fine-tuned tiny BERT checkpoint on a tiny sentiment CSV whose labels are words."""
    from nasprune.data import DataOptions
    from nasprune.training import TrainingConfig
    from nasprune.workflows import train_supernet

    root = tmp_path_factory.mktemp("export-trust")
    write_tiny_bert(root / "model", num_layers=3, seed=3)
    for split, n, seed in (("train", 64, 0), ("valid", 40, 1), ("test", 40, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed, labels=("neg", "pos"))
    data = DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), max_seq_length=16)
    config = TrainingConfig(epochs=1, learning_rate=1e-3, batch_size=16, strategy="standard")
    checkpoint = train_supernet(str(root / "model"), data, config, "small", root / "finetune", progress=False)
    return root, checkpoint


def data_files(root) -> dict[str, str]:
    """The tiny task's files: they lie outside the checkpoint's folder, so commands are given them."""
    return {f"{name}_file": str(root / f"{split}.csv") for name, split in
            (("train", "train"), ("validation", "valid"), ("test", "test"))}


@pytest.fixture(scope="module")
def rfp_results(finetuned):
    """Retraining-free pruning with mask tuning: the full model's row and one tuned, pruned row."""
    from nasprune.baselines import BaselineOptions, run_baseline

    root, checkpoint = finetuned
    options = BaselineOptions(method="rfp", budgets=(0.5,), num_importance_samples=32, num_tuning_samples=32,
                              batch_size=8)
    run_baseline(checkpoint, options, root / "rfp", data_overrides=data_files(root), progress=False)
    return root / "rfp"


def _meta(path) -> dict:
    return json.loads((path / EXPORT_META_FILE).read_text())


def _copy_results(source, target):
    shutil.copytree(source, target)
    return target


def _edit_summary(results, **changes):
    path = results / "summary.json"
    summary = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            summary.pop(key, None)
        else:
            summary[key] = value
    path.write_text(json.dumps(summary))


def _sentences(n: int = 6, seed: int = 5) -> tuple[list[str], list[str]]:
    from conftest import SENTIMENT_WORDS

    rng = np.random.default_rng(seed)
    words = lambda: " ".join(rng.choice(SENTIMENT_WORDS, size=int(rng.integers(2, 7))))  # noqa: E731
    return [words() for _ in range(n)], [words() for _ in range(n)]


# --- measure, don't copy ----------------------------------------------------------------------
def test_export_measures_the_exported_model_and_keeps_the_table_apart(finetuned, rfp_results, tmp_path, capsys):
    import argparse

    from nasprune.cli.export import run_from_args as export_from_args

    root, checkpoint = finetuned
    table = pd.read_csv(rfp_results / "results.csv")
    full_row = table[table["budget"] == 1.0].iloc[0]
    # Claim a better error for the unpruned row than it has: export must not repeat the claim.
    results = _copy_results(rfp_results, tmp_path / "results")
    claimed = table.copy()
    claimed.loc[claimed["trial_id"] == full_row["trial_id"], ["valid_error", "test_error"]] = [0.0123, 0.0456]
    claimed.to_csv(results / "results.csv", index=False)

    args = argparse.Namespace(
        checkpoint=str(checkpoint), results=str(results), output_dir=str(tmp_path / "full"), pick=-1,
        max_params=None, max_error=None, onnx=False, overwrite_output_dir=False, evaluate=True, eval_batch_size=7,
        **data_files(root),
    )
    out = export_from_args(args)
    meta = _meta(out)
    assert meta["evaluated"] is True and meta["trial_id"] == int(full_row["trial_id"])
    # The unpruned sub-network's measured errors are the true ones of the baseline's own evaluation.
    assert meta["valid_error"] == pytest.approx(full_row["valid_error"], abs=1e-12)
    assert meta["test_error"] == pytest.approx(full_row["test_error"], abs=1e-12)
    assert meta["searched"]["valid_error"] == 0.0123 and meta["searched"]["test_error"] == 0.0456
    assert meta["searched"]["method"] == "rfp" and "mask_scales" not in meta  # the full model is never tuned
    assert meta["evaluation"]["validation_examples"] == 40 and meta["evaluation"]["test_examples"] == 40
    printed = capsys.readouterr().out
    assert f"(error {full_row['valid_error']:.4f})" in printed and "valid error 0.0123" in printed


def test_no_evaluate_writes_no_error_numbers_and_needs_no_data(finetuned, rfp_results, tmp_path, monkeypatch):
    from nasprune import workflows
    from nasprune.data import DataOptions

    _, checkpoint = finetuned

    def data_is_gone(self):
        raise NaspruneError("train file /gone.csv does not exist")

    monkeypatch.setattr(DataOptions, "load", data_is_gone)
    with pytest.raises(NaspruneError, match="--no-evaluate"):
        workflows.export(checkpoint, rfp_results, tmp_path / "a", pick=0)
    assert not (tmp_path / "a").exists()
    out = workflows.export(checkpoint, rfp_results, tmp_path / "b", pick=0, evaluate=False)
    meta = _meta(out)
    assert meta["evaluated"] is False and "not evaluated" in meta["evaluation"]
    text = json.dumps(meta)
    assert "valid_error" not in text and "test_error" not in text


# --- retraining-free pruning: the tuned mask values are part of the weights ---------------------
def test_rfp_export_folds_the_tuned_mask_values_into_the_weights(finetuned, rfp_results, tmp_path):
    from nasprune.scales import MaskScales, apply_scales
    from nasprune.workflows import export

    root, checkpoint = finetuned
    table = pd.read_csv(rfp_results / "results.csv")
    tuned_row = table[table["budget"] == 0.5].iloc[0]
    subnet = SubNetwork.from_dict(json.loads(tuned_row["subnet"]))
    recorded = json.loads((rfp_results / "mask_scales.json").read_text())[str(int(tuned_row["trial_id"]))]
    scales = MaskScales.from_dict(recorded, subnet)
    kept = np.concatenate([scales.head[subnet.head_mask], scales.unit[subnet.unit_mask]])
    assert not np.allclose(kept, 1.0), "mask tuning changed nothing: the test would not see a missing fold"

    out = export(checkpoint, rfp_results, tmp_path / "rfp-model", pick=0, data_overrides=data_files(root))
    meta = _meta(out)
    assert meta["trial_id"] == int(tuned_row["trial_id"]) and "mask_scales" in meta
    assert meta["valid_error"] == pytest.approx(tuned_row["valid_error"], abs=1e-12)
    assert meta["test_error"] == pytest.approx(tuned_row["test_error"], abs=1e-12)

    # Logits: those of the super-network with the tuned values applied, not of the plain checkpoint.
    model = SuperNetwork.from_pretrained(str(checkpoint)).model
    first, second = _sentences()
    from transformers import AutoTokenizer

    batch = dict(AutoTokenizer.from_pretrained(out)(first, second, padding=True, return_tensors="pt"))
    tuned = SuperNetwork(apply_scales(model, subnet, scales)).eval()
    plain = SuperNetwork(model).eval()
    with torch.inference_mode():
        exported = load_pruned_model(out).eval()(**batch).logits
        with tuned.select(subnet):
            expected = tuned(**batch)
        with plain.select(subnet):
            untuned = plain(**batch)
    torch.testing.assert_close(exported, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(exported, untuned, atol=1e-4)


def test_rfp_export_refuses_a_tuned_row_without_its_mask_values(finetuned, rfp_results, tmp_path):
    from nasprune.workflows import export

    _, checkpoint = finetuned
    results = _copy_results(rfp_results, tmp_path / "results")
    (results / "mask_scales.json").write_text("{}")
    with pytest.raises(NaspruneError, match="no tuned mask values for trial"):
        export(checkpoint, results, tmp_path / "out", pick=0)
    assert not (tmp_path / "out").exists()


def test_mask_scales_round_trip_and_refuse_what_does_not_fit():
    from nasprune.scales import MaskScales

    subnet = SubNetwork.from_dict({"heads": [[0, 2], []], "units": [[1], [0, 3]], "num_heads": 4, "intermediate_size": 4})
    scales = MaskScales.binary(subnet)
    scales.head[0, 2] = 0.5
    scales.unit[1, 3] = 1.25
    again = MaskScales.from_dict(json.loads(json.dumps(scales.to_dict(subnet))), subnet)
    assert np.array_equal(again.head, scales.head) and np.array_equal(again.unit, scales.unit)
    with pytest.raises(NaspruneError, match="layer 0 has 1 heads values for 2 kept heads"):
        MaskScales.from_dict({"heads": [[1.0], []], "units": [[1.0], [1.0, 1.0]]}, subnet)
    with pytest.raises(NaspruneError, match="not finite"):
        MaskScales.from_dict({"heads": [[1.0, float("nan")], []], "units": [[1.0], [1.0, 1.0]]}, subnet)


# --- rows whose weights are not the checkpoint's ----------------------------------------------
def _fake_results(folder, summary: dict, **columns) -> None:
    folder.mkdir()
    subnet = SubNetwork.from_counts(
        SuperNetwork(_tiny_hf()).shape, [4, 4, 4], [64, 64, 64]
    )
    row = {"trial_id": 3, "valid_error": 0.2, "test_error": 0.25, "relative_params": 1.0, "pareto": True,
           "subnet": json.dumps(subnet.to_dict()), **columns}
    pd.DataFrame([row]).to_csv(folder / "results.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary))


def _tiny_hf():
    from conftest import tiny_model

    return tiny_model("bert", "classification")


@pytest.mark.parametrize(
    "summary,columns,match",
    [
        ({"method": "moasha", "syne_tune": {"path": "/runs/st"}, "epochs": 3}, {"best_epoch": 2},
         r"standard-NAS results .*trial 3 .*re-train that point"),
        ({"method": "reference_model", "checkpoint": "x"}, {"reference_model": "distilbert"},
         "is the reference model distilbert"),
        ({"method": "layer_drop", "checkpoint": "x", "baseline": {"epochs": 1}}, {"dropped_layers": 1},
         "fine-tuned for 1 epoch.* re-train it"),
    ],
    ids=["standard-nas", "reference-model", "layer-drop"],
)
def test_rows_without_their_weights_are_refused(finetuned, tmp_path, summary, columns, match):
    from nasprune.workflows import export

    _, checkpoint = finetuned
    _fake_results(tmp_path / "results", summary, **columns)
    with pytest.raises(NaspruneError, match=match):
        export(checkpoint, tmp_path / "results", tmp_path / "out", pick=0)
    assert not (tmp_path / "out").exists()


def test_results_without_a_summary_are_refused(finetuned, rfp_results, tmp_path):
    from nasprune.workflows import export

    _, checkpoint = finetuned
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(rfp_results / "results.csv", results / "results.csv")
    with pytest.raises(NaspruneError, match="summary.json is missing"):
        export(checkpoint, results / "results.csv", tmp_path / "out", pick=0)


def test_incomplete_results_are_refused(finetuned, rfp_results, tmp_path):
    from nasprune.workflows import export

    _, checkpoint = finetuned
    results = _copy_results(rfp_results, tmp_path / "results")
    _edit_summary(results, complete=False)
    with pytest.raises(NaspruneError, match="incomplete"):
        export(checkpoint, results, tmp_path / "out", pick=0, evaluate=False)
    assert not (tmp_path / "out").exists()


# --- results belong to their checkpoint -------------------------------------------------------
def test_results_of_another_checkpoint_are_refused(finetuned, rfp_results, tmp_path, caplog):
    from nasprune.checkpoint import load_checkpoint
    from nasprune.workflows import export

    _, checkpoint = finetuned
    _, info = load_checkpoint(checkpoint)
    results = _copy_results(rfp_results, tmp_path / "results")

    _edit_summary(results, checkpoint_fingerprint="0" * 64)
    with pytest.raises(NaspruneError, match="come from another checkpoint"):
        export(checkpoint, results, tmp_path / "a", pick=0, evaluate=False)

    _edit_summary(results, checkpoint_fingerprint=info.fingerprint)
    with caplog.at_level(logging.WARNING, logger="nasprune"):
        export(checkpoint, results, tmp_path / "b", pick=0, evaluate=False)
    assert "fingerprint" not in caplog.text

    # Older results without a fingerprint: one warning, then the folder they name must be this one.
    _edit_summary(results, checkpoint_fingerprint=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasprune"):
        export(checkpoint, results, tmp_path / "c", pick=0, evaluate=False)
    assert caplog.text.count("records no checkpoint fingerprint") == 1
    copy = tmp_path / "copy-of-checkpoint"
    shutil.copytree(checkpoint, copy)
    with pytest.raises(NaspruneError, match="come from another checkpoint.*their summary names"):
        export(copy, results, tmp_path / "d", pick=0, evaluate=False)


# --- ONNX takes every input the tokenizer gives -----------------------------------------------
def test_onnx_of_a_sentence_pair_model_takes_the_tokenizers_output(tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'onnx' extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    from transformers import AutoTokenizer, BertForSequenceClassification

    write_tiny_bert(tmp_path / "bert", num_layers=3, seed=4)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "bert")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "bert").eval()
    pruned = slice_subnetwork(model, SubNetwork.from_counts(SuperNetwork(model).shape, [2, 4, 1], [64, 10, 33]))
    path = export_onnx(pruned, tmp_path / "model.onnx", input_names=onnx_input_names(pruned, tokenizer))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]

    first, second = _sentences()
    encoded = tokenizer(first, second, padding=True, return_tensors="np")
    assert encoded["token_type_ids"].any(), "a sentence pair has a second segment"
    (logits,) = session.run(["logits"], dict(encoded))  # the tokenizer's full output, as it is
    with torch.inference_mode():
        expected = pruned(**{k: torch.from_numpy(v) for k, v in encoded.items()}).logits
        without_segments = pruned(input_ids=torch.from_numpy(encoded["input_ids"]),
                                  attention_mask=torch.from_numpy(encoded["attention_mask"])).logits
    torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(expected, without_segments, atol=1e-3), "the segments must matter for this test"


# --- label names ------------------------------------------------------------------------------
def test_exported_model_answers_pipelines_with_label_names(finetuned, rfp_results, tmp_path):
    from transformers import AutoConfig, pipeline

    from nasprune.workflows import export

    _, checkpoint = finetuned
    onnx = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
    out = export(checkpoint, rfp_results, tmp_path / "model", pick=0, evaluate=False, onnx=onnx)
    config = AutoConfig.from_pretrained(out)
    assert config.id2label == {0: "neg", 1: "pos"} and config.label2id == {"neg": 0, "pos": 1}
    classify = pipeline("text-classification", model=str(out), device="cpu")
    answers = classify(["good great movie", "awful dull plot"])
    assert len(answers) == 2 and {a["label"] for a in answers} <= {"neg", "pos"}
    if onnx:  # the graph export writes takes what the exported tokenizer gives
        import onnxruntime as ort
        from transformers import AutoTokenizer

        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        encoded = AutoTokenizer.from_pretrained(out)(*_sentences(), padding=True, return_tensors="np")
        assert sorted(i.name for i in session.get_inputs()) == sorted(encoded)
        (logits,) = session.run(["logits"], dict(encoded))
        with torch.inference_mode():
            expected = load_pruned_model(out).eval()(**{k: torch.from_numpy(v) for k, v in encoded.items()}).logits
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=0)


# --- the command line -------------------------------------------------------------------------
def test_cli_export_flags_and_one_line_refusal(finetuned, rfp_results, tmp_path, capsys):
    from nasprune.cli import main

    root, checkpoint = finetuned
    common = ["--quiet", "export", "--checkpoint", str(checkpoint), "--results", str(rfp_results), "--pick", "0"]
    files = [token for name, path in data_files(root).items() for token in (f"--{name.replace('_', '-')}", path)]
    assert main([*common, "--output-dir", str(tmp_path / "a"), "--no-evaluate"]) == 0
    assert "not evaluated (--no-evaluate)" in capsys.readouterr().out
    assert main([*common, "--output-dir", str(tmp_path / "b"), "--eval-batch-size", "5", *files]) == 0
    out = capsys.readouterr().out
    assert "measured on the exported model: valid accuracy" in out and "the results table (trial" in out

    results = _copy_results(rfp_results, tmp_path / "results")
    _edit_summary(results, checkpoint_fingerprint="f" * 64)
    assert main([*common[:5], str(results), "--pick", "0", "--output-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasprune: error: the results in") and len(err.strip().splitlines()) == 1
