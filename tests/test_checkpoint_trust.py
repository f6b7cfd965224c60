"""Checkpoints one can trust: fingerprints, refused resumes, no pickle, no half-saves, no diverged
weights, and clear messages for model folders that do not fit."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_model, write_sentiment_csv, write_tiny_bert
from nasprune import workflows
from nasprune.checkpoint import (
    CheckpointInfo,
    clean_interrupted_saves,
    epoch_checkpoints,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from nasprune.data import DataOptions
from nasprune.errors import NaspruneError
from nasprune.session import load_tokenizer
from nasprune.supernet import check_max_seq_length, load_hf_model
from nasprune.training import MAX_PARAMETER_MAGNITUDE, TrainingConfig, check_parameters_sane
from nasprune.workflows import train_supernet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    write_tiny_bert(root / "model", num_layers=2)
    for split, n, seed in (("train", 32, 0), ("valid", 16, 1), ("test", 16, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed, labels=("neg", "pos"))
    return root


def _data(root: Path, **overrides) -> DataOptions:
    options = dict(
        train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
        test_file=str(root / "test.csv"), max_seq_length=16,
    )
    return DataOptions(**{**options, **overrides})


def _config(**overrides) -> TrainingConfig:
    return TrainingConfig(**{"epochs": 1, "learning_rate": 1e-3, "batch_size": 16, "strategy": "sandwich", **overrides})


def _train(root: Path, out: Path, data: dict | None = None, **config) -> Path:
    return train_supernet(
        str(root / "model"), _data(root, **(data or {})), _config(**config), "small", out, progress=False, device=CPU
    )


def _interrupted_before_epoch(monkeypatch, root: Path, out: Path, epoch: int, **config) -> None:
    """Train ``config`` into ``out`` and crash while saving ``epoch``: ``epoch - 1`` is on disk."""
    real_save = workflows.save_checkpoint

    def crash_at_epoch(directory, *args, **kwargs):
        if Path(directory).name == f"epoch-{epoch}":
            raise KeyboardInterrupt
        return real_save(directory, *args, **kwargs)

    monkeypatch.setattr(workflows, "save_checkpoint", crash_at_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(root, out, **config)
    monkeypatch.setattr(workflows, "save_checkpoint", real_save)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


# --- fingerprints -------------------------------------------------------------------------------
def _save_tiny_checkpoint(directory: Path, **info_overrides) -> Path:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])})
    info = CheckpointInfo(
        base_model="tiny", model_type="bert", task="x", task_kind="classification", num_labels=3,
        max_seq_length=16, search_space="small", strategy="full", epoch=1, **info_overrides,
    )
    return save_checkpoint(directory, tiny_model("bert", "classification"), tokenizer, info)


def test_fingerprint_covers_the_weights_and_the_settings(tmp_path):
    path = _save_tiny_checkpoint(tmp_path / "run" / "epoch-1", training={"learning_rate": 1e-3})
    checkpoint, info = load_checkpoint(tmp_path / "run")
    assert checkpoint == path and len(info.fingerprint) == 64
    # The same weights and settings give the same fingerprint; another setting another one.
    assert _save_tiny_checkpoint(tmp_path / "again", training={"learning_rate": 1e-3}).joinpath(
        "nasprune.json").read_text().count(info.fingerprint) == 1
    assert load_checkpoint(_save_tiny_checkpoint(tmp_path / "other", training={"learning_rate": 1e-2}))[1].fingerprint != info.fingerprint

    weights = path / "model.safetensors"
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[-3] ^= 0x01  # one bit of the last tensor: same size, valid header
    weights.write_bytes(bytes(flipped))
    with pytest.raises(NaspruneError, match="does not match its fingerprint"):
        load_checkpoint(path)
    weights.write_bytes(original)

    meta = json.loads((path / "nasprune.json").read_text())
    meta["training"]["learning_rate"] = 0.5
    (path / "nasprune.json").write_text(json.dumps(meta))
    with pytest.raises(NaspruneError, match="does not match its fingerprint"):
        load_checkpoint(path)

    meta["fingerprint"] = None  # a checkpoint from before fingerprints: loads, unverified
    (path / "nasprune.json").write_text(json.dumps(meta))
    assert load_checkpoint(path)[1].fingerprint is None


# --- resuming -----------------------------------------------------------------------------------
def test_resume_refuses_changed_settings_and_names_each(workspace, tmp_path):
    out = tmp_path / "run"
    first = _train(workspace, out)
    weights = (first / "model.safetensors").read_bytes()
    assert _train(workspace, out) == first  # the same request: the finished checkpoint, untouched
    assert (first / "model.safetensors").read_bytes() == weights

    with pytest.raises(NaspruneError) as refused:
        _train(workspace, out, data={"max_seq_length": 32, "seed": 3, "max_train_samples": 20}, learning_rate=1e-2,
               batch_size=8, epochs=2)
    message = str(refused.value)
    for change in ("--learning-rate 0.001 -> 0.01", "--batch-size 16 -> 8", "--epochs 1 -> 2",
                   "--max-seq-length 16 -> 32", "--data-seed 0 -> 3", "--max-train-samples None -> 20",
                   "--overwrite-output-dir"):
        assert change in message, message
    assert "\n" not in message and "--temperature" not in message

    for data, config, name in (
        ({"text_column": "label", "label_column": "text"}, {}, "--text-column"),
        ({}, {"strategy": "full"}, "--strategy"),
        ({}, {"num_random_subnets": 3}, "--num-random-subnets"),
        ({}, {"seed": 1}, "--seed"),
        ({}, {"warmup_ratio": 0.2}, "--warmup-ratio"),
        ({}, {"temperature": 2.0}, "--temperature"),
    ):
        with pytest.raises(NaspruneError, match=name):
            _train(workspace, out, data=data, **config)
    with pytest.raises(NaspruneError, match="--search-space small -> medium"):
        train_supernet(str(workspace / "model"), _data(workspace), _config(), "medium", out, progress=False, device=CPU)
    other_model = tmp_path / "other-model"
    shutil.copytree(workspace / "model", other_model)
    with pytest.raises(NaspruneError, match="--model"):
        train_supernet(str(other_model), _data(workspace), _config(), "small", out, progress=False, device=CPU)

    again = train_supernet(str(workspace / "model"), _data(workspace), _config(learning_rate=1e-2), "small", out,
                           overwrite=True, progress=False, device=CPU)
    assert json.loads((again / "nasprune.json").read_text())["training"]["learning_rate"] == 1e-2


def test_resumed_run_equals_an_uninterrupted_one(workspace, tmp_path, monkeypatch):
    straight = _train(workspace, tmp_path / "straight", epochs=2)
    out = tmp_path / "interrupted"
    _interrupted_before_epoch(monkeypatch, workspace, out, 2, epochs=2)
    assert [p.name for p in epoch_checkpoints(out)] == ["epoch-1"]
    files = {p.name for p in (out / "epoch-1").iterdir()}
    assert {"training_state.safetensors", "training_state.json"} <= files and "training_state.pt" not in files

    resumed = _train(workspace, out, epochs=2)
    assert resumed.name == "epoch-2"
    expected, actual = _weights(straight), _weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)
    info = CheckpointInfo.load(resumed)
    assert [h["epoch"] for h in info.history] == [1, 2]


def test_training_state_round_trips_without_pickle(tmp_path):
    state = {
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 3)}},
                      "param_groups": [{"betas": (0.9, 0.999), "params": [0], "lr": 1e-3}]},
        "rng": {"state": {"state": 2**100 + 7, "inc": 5}}, "torch_rng": torch.get_rng_state(),
        "cuda_rng": [torch.arange(4, dtype=torch.uint8)], "history": [], "epoch": 1, "loss": float("inf"),
    }
    save_training_state(tmp_path, state)
    loaded = load_training_state(tmp_path)
    assert list(loaded["optimizer"]["state"]) == [0]  # int keys stay ints: the optimizer maps them
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert loaded["rng"] == state["rng"] and loaded["loss"] == float("inf")
    assert torch.equal(loaded["torch_rng"], state["torch_rng"]) and loaded["torch_rng"].device.type == "cpu"
    assert torch.equal(loaded["cuda_rng"][0], state["cuda_rng"][0])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_training_state(empty) is None
    # A pair from two different saves is refused, not mixed.
    document = json.loads((tmp_path / "training_state.json").read_text())
    save_training_state(tmp_path, state)
    (tmp_path / "training_state.json").write_text(json.dumps(document))
    with pytest.raises(NaspruneError, match="not from one save"):
        load_training_state(tmp_path)


def test_cuda_generators_are_saved_and_restored_from_the_cpu(tmp_path, monkeypatch):
    # No GPU needed: the CUDA calls are stood in for; what matters is what is saved and handed back.
    from nasprune.spaces import get_search_space
    from nasprune.supernet import SuperNetwork
    from nasprune.training import Trainer, get_strategy

    generators = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resumed on fewer GPUs
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [g.clone() for g in generators])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.__setitem__(index, state))

    model = tiny_model("bert", "classification")
    supernet = SuperNetwork(model)
    trainer = Trainer(supernet, get_strategy("standard", get_search_space("small", supernet.shape)),
                      [{}], TrainingConfig(epochs=1), progress=False)
    save_training_state(tmp_path, trainer.state_dict())
    trainer.load_state_dict(load_training_state(tmp_path))
    assert list(restored) == [0] and torch.equal(restored[0], generators[0]) and restored[0].device.type == "cpu"


class _Payload:
    """Unpickling this creates the marker file: proof that a file was unpickled."""

    marker: Path

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_payload_never_runs(workspace, tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # the payload works: it makes the marker
    assert marker.exists()
    marker.unlink()

    pristine = tmp_path / "pristine"
    _interrupted_before_epoch(monkeypatch, workspace, pristine, 2, epochs=2)
    cases = {  # planted file(s) -> what the resume says (None: it resumes and finishes)
        ("training_state.pt",): None,  # beside the real state: never opened
        ("training_state.pt", "-training_state.safetensors", "-training_state.json"): "unsafe old format",
        ("training_state.json",): "corrupt training state",
        ("training_state.safetensors",): "corrupt training state",
        ("pytorch_model.bin",): None,  # beside model.safetensors: never opened
        ("model.safetensors",): "does not match its fingerprint",
    }
    for i, (files, message) in enumerate(cases.items()):
        out = tmp_path / f"case-{i}"
        shutil.copytree(pristine, out)
        for name in files:
            target = out / "epoch-1" / name.lstrip("-")
            if name.startswith("-"):
                target.unlink()
            else:
                target.write_bytes(payload)
        if message is None:
            assert _train(workspace, out, epochs=2).name == "epoch-2"
        else:
            with pytest.raises(NaspruneError, match=message):
                _train(workspace, out, epochs=2)
        assert not marker.exists(), files

    bin_only = tmp_path / "bin-only"
    bin_only.mkdir()
    shutil.copy(pristine / "epoch-1" / "config.json", bin_only / "config.json")
    (bin_only / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(NaspruneError, match="holds only pytorch_model.bin, a pickle file.*save_pretrained"):
        load_hf_model(str(bin_only), "classification", 2)
    assert not marker.exists()


# --- interrupted saves --------------------------------------------------------------------------
def test_interrupted_saves_are_cleaned_and_a_moved_aside_epoch_restored(workspace, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _interrupted_before_epoch(monkeypatch, workspace, out, 2, epochs=2)
    half_written = out / ".epoch-2.tmp-4242"
    half_written.mkdir()
    (half_written / "config.json").write_text("{")
    # A crash between moving epoch-1 aside and renaming its replacement into place.
    (out / "epoch-1").rename(out / ".epoch-1.old-4242")
    assert epoch_checkpoints(out) == []

    clean_interrupted_saves(out)
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1"]

    stale = out / ".epoch-1.old-77"  # the replacement did land: the old copy is just garbage
    shutil.copytree(out / "epoch-1", stale)
    (out / ".epoch-2.tmp-77").mkdir()
    assert _train(workspace, out, epochs=2).name == "epoch-2"  # resumes, and clears both
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1", "epoch-2"]


# --- divergence ---------------------------------------------------------------------------------
def test_diverged_weights_are_never_saved(workspace, tmp_path):
    # One step per epoch: the loss of that step is finite, the weights after it are not sane.
    out = tmp_path / "diverged"
    with pytest.raises(NaspruneError, match="diverged.*parameter .* magnitude.*--learning-rate"):
        _train(workspace, out, data={"max_train_samples": 16}, learning_rate=1e6, warmup_ratio=0.0)
    assert not out.exists() or not any(out.glob("*epoch-*"))
    # Several steps: the loss itself goes non-finite first; still nothing saved.
    with pytest.raises(NaspruneError, match="diverged"):
        _train(workspace, out, learning_rate=1e6, warmup_ratio=0.0, epochs=2)
    assert not out.exists() or not any(out.glob("*epoch-*"))

    model = tiny_model("bert", "classification")
    check_parameters_sane(model, "here")
    with torch.no_grad():
        model.classifier.bias[0] = MAX_PARAMETER_MAGNITUDE * 2
    with pytest.raises(NaspruneError, match="classifier.bias"):
        check_parameters_sane(model, "here")
    with torch.no_grad():
        model.classifier.bias[0] = float("nan")
    with pytest.raises(NaspruneError, match="nan"):
        check_parameters_sane(model, "here")


# --- model loading ------------------------------------------------------------------------------
def test_model_folders_that_do_not_fit_get_one_clear_message(tmp_path, monkeypatch):
    from transformers import BertModel

    from conftest import tiny_config

    three_classes = tmp_path / "three"
    tiny_model("bert", "classification").save_pretrained(three_classes)  # a trained head of 3 labels
    assert load_hf_model(str(three_classes), "classification", 3).config.num_labels == 3
    assert load_hf_model(str(three_classes), "classification").config.num_labels == 3
    with pytest.raises(NaspruneError, match="3 label.*classification with 2"):
        load_hf_model(str(three_classes), "classification", 2)
    with pytest.raises(NaspruneError, match="3 label.*regression with 1"):
        load_hf_model(str(three_classes), "regression")
    with pytest.raises(NaspruneError, match="sequence-classification head, but the task is multiple_choice"):
        load_hf_model(str(three_classes), "multiple_choice")

    edited = tmp_path / "edited"
    shutil.copytree(three_classes, edited)
    config = json.loads((edited / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    config["label2id"] = {"a": 0, "b": 1}
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(NaspruneError, match="num_labels 2, but the saved task head has 3 outputs"):
        load_hf_model(str(edited), "classification", 2)

    bare = tmp_path / "bare"  # a pre-trained encoder: it gets a new head of any size
    BertModel(tiny_config("bert")).save_pretrained(bare)
    assert load_hf_model(str(bare), "classification", 5).config.num_labels == 5
    assert load_hf_model(str(bare), "regression").config.num_labels == 1

    truncated = tmp_path / "truncated"
    shutil.copytree(three_classes, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(NaspruneError, match=f"model weights {weights} cannot be read"):
        load_hf_model(str(truncated), "classification", 3)

    monkeypatch.chdir(tmp_path)
    for missing in ("./no/such/model", "no/such/model", "~/no-such-nasprune-model", str(tmp_path / "nope")):
        with pytest.raises(NaspruneError, match=f"model path {missing} does not exist"):
            load_hf_model(missing, "classification")
        with pytest.raises(NaspruneError, match=f"model path {missing} does not exist"):
            load_tokenizer(missing)


def test_max_seq_length_is_checked_against_the_position_embeddings(workspace, tmp_path):
    bert = tiny_model("bert", "classification")  # 64 positions
    check_max_seq_length(bert, 64)
    with pytest.raises(NaspruneError, match="--max-seq-length 65 is longer than the model's 64 positions"):
        check_max_seq_length(bert, 65)
    roberta = tiny_model("roberta", "classification")  # 66 slots, two before the first position
    check_max_seq_length(roberta, 64)
    with pytest.raises(NaspruneError, match="64 positions .*max_position_embeddings 66 minus a padding offset of 2"):
        check_max_seq_length(roberta.config, 65)
    with pytest.raises(NaspruneError, match="--max-seq-length 100"):
        _train(workspace, tmp_path / "too-long", data={"max_seq_length": 100})
    assert not (tmp_path / "too-long" / "epoch-1").exists()


# --- labels -------------------------------------------------------------------------------------
def test_checkpoints_name_their_labels(workspace, tmp_path):
    from transformers import pipeline

    checkpoint = _train(workspace, tmp_path / "labels")
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    classify = pipeline("text-classification", model=str(checkpoint), device=-1)
    assert classify("good movie")[0]["label"] in ("neg", "pos")
