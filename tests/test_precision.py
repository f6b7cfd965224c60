"""Mixed precision, device settings and the training loop's host syncs, all on the CPU.

bf16 and fp16 autocast run on the CPU too (torch >= 2.x), so the same code paths a GPU run takes
are checked here: the predictions and the trained weights match fp32's within tolerance.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from conftest import tiny_batch, tiny_model
from nasprune.accelerator import (
    DEVICE_ENV,
    PRECISION_ENV,
    Precision,
    compile_enabled,
    default_device,
    default_precision,
    resolve_device,
    use_settings,
)
from nasprune.checkpoint import load_training_state, save_training_state
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator, plain_model_error
from nasprune.spaces import get_search_space
from nasprune.supernet import SuperNetwork
from nasprune.training import Trainer, TrainingConfig, get_strategy


def _batches(model, n: int = 3, seed: int = 1) -> list[dict]:
    batches = []
    for i in range(n):
        batch = tiny_batch(model, batch=4, seq_len=9, seed=seed + i)
        batch["labels"] = torch.arange(4) % model.config.num_labels
        batches.append(batch)
    return batches


def _trainer(model, batches, precision: str, strategy: str = "sandwich", **kwargs) -> Trainer:
    supernet = SuperNetwork(model)
    space = get_search_space("small", supernet.shape)
    config = TrainingConfig(epochs=1, learning_rate=1e-3, strategy=strategy, warmup_ratio=0.0)
    return Trainer(supernet, get_strategy(strategy, space, 1), batches, config, progress=False,
                   precision=precision, **kwargs)


def _metric(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def test_precision_names_contexts_and_scalers():
    assert Precision("fp32").autocast().__class__.__name__ == "nullcontext"
    assert Precision("bf16").dtype is torch.bfloat16 and Precision("fp16").dtype is torch.float16
    assert [Precision(n).grad_scaler().is_enabled() for n in ("fp32", "bf16", "fp16")] == [False, False, True]
    with pytest.raises(NaspruneError, match="--precision must be one of fp32, bf16, fp16"):
        Precision("fp8")
    with Precision("bf16").autocast():
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype is torch.bfloat16


def test_a_precision_autocast_refuses_is_one_clear_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("In CPU autocast, but the target dtype is not supported")

    monkeypatch.setattr(torch, "autocast", refuse)
    with pytest.raises(NaspruneError, match=r"--precision fp16 is not supported on cpu .*use fp32 or bf16"):
        Precision.on("fp16", "cpu")
    Precision.on("fp32", "cpu")  # fp32 never autocasts


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_evaluation_predicts_as_fp32(precision):
    model = tiny_model("bert", "classification", dropout=0.0)
    supernet = SuperNetwork(model)
    batches = _batches(model, 4)
    space = get_search_space("small", supernet.shape)
    subnet = space.vector_to_subnet(space.sample_vector(np.random.default_rng(3)))
    exact = SubnetEvaluator(supernet, batches, _metric, precision="fp32")
    mixed = SubnetEvaluator(supernet, batches, _metric, precision=precision)
    assert mixed.precision.name == precision
    for sub in (None, subnet):
        sub = sub or space.to_subnet(space.largest())
        want, labels = exact.predict(sub)
        got, got_labels = mixed.predict(sub)
        assert got.dtype == np.float32 and np.array_equal(labels, got_labels)
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 0.05 * scale  # bf16 keeps 8 bits of mantissa
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9
    # The plain-model path (exported and reference models) autocasts too.
    assert plain_model_error(model, batches, _metric, precision=precision) == pytest.approx(
        plain_model_error(model, batches, _metric, precision="fp32"), abs=0.15)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_follows_fp32(precision):
    """Same start, same batches, same sub-networks: the weights after a few mixed-precision steps are
    those of fp32 within tolerance, and so are the predictions."""
    start = tiny_model("bert", "classification", dropout=0.0)
    batches = _batches(start, 3)
    exact, mixed = copy.deepcopy(start), copy.deepcopy(start)
    _trainer(exact, batches, "fp32").train()
    trainer = _trainer(mixed, batches, precision)
    history = trainer.train()
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert np.isfinite(history[0].train_loss)
    for name, param in mixed.named_parameters():
        assert param.dtype is torch.float32, name  # autocast: the weights stay fp32
    pairs = list(zip(start.parameters(), exact.parameters(), mixed.parameters()))
    moved = sum(((e - s) ** 2).sum() for s, e, _ in pairs).sqrt()
    drift = sum(((m - e) ** 2).sum() for _, e, m in pairs).sqrt()
    assert moved > 1e-3 and drift < 0.3 * moved  # AdamW's sign-like steps: small gradients may flip
    inputs = {k: v for k, v in batches[0].items() if k != "labels"}
    with torch.no_grad():
        before, want, got = (m.eval()(**inputs).logits for m in (start, exact, mixed))
    assert (got - want).norm() < 0.05 * (want - before).norm()  # training moved them far more


def test_the_training_step_never_waits_for_the_device(monkeypatch):
    """No .item(), float() or host copy per sub-network: the step's loss comes back as a 0-d tensor,
    and train() reads the running sum only every log_every steps."""
    model = tiny_model("bert", "classification", dropout=0.0)
    batches = _batches(model, 4)
    trainer = _trainer(model, batches, "fp32", strategy="full", log_every=2)
    reads = []
    for name in ("item", "__float__", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    loss = trainer.train_step(dict(batches[0]), 0)
    assert reads == []
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and not loss.requires_grad
    monkeypatch.setattr("nasprune.training.trainer.check_parameters_sane", lambda *a: None)
    trainer.train()
    # 4 steps, log_every=2: reads after steps 2 and 4, and the epoch's mean.
    assert reads.count("__float__") + reads.count("item") == 3


def test_a_diverged_loss_is_still_caught_between_reads():
    model = tiny_model("bert", "classification", dropout=0.0)
    batches = _batches(model, 3)
    trainer = _trainer(model, batches, "fp32", log_every=10)
    original = trainer.train_step
    trainer.train_step = lambda batch, step: original(batch, step) * (float("nan") if step == 1 else 1.0)
    with pytest.raises(NaspruneError, match=r"training diverged \(loss nan\) in epoch 1, by step 2"):
        trainer.train()


def test_trainer_state_round_trips_through_the_cpu_with_the_loss_scale(tmp_path):
    model = tiny_model("bert", "classification", dropout=0.0)
    batches = _batches(model, 2)
    trainer = _trainer(model, batches, "fp16")
    trainer.train()
    trainer.scaler.update(1234.0)  # a scale the fresh trainer would not start from
    state = trainer.state_dict()
    assert state["grad_scaler"]["scale"] == 1234.0
    save_training_state(tmp_path, state)
    loaded = load_training_state(tmp_path)
    assert all(t.device.type == "cpu" for t in (loaded["torch_rng"],))
    fresh = _trainer(copy.deepcopy(model), batches, "fp16")
    fresh.load_state_dict(loaded)
    assert fresh.scaler.get_scale() == 1234.0
    assert torch.equal(torch.get_rng_state(), state["torch_rng"])
    assert fresh.rng.bit_generator.state == trainer.rng.bit_generator.state
    assert fresh.start_epoch == 1
    # An fp32 trainer has no scaler to save, and ignores one it is given.
    plain = _trainer(copy.deepcopy(model), batches, "fp32")
    assert "grad_scaler" not in plain.state_dict()
    plain.load_state_dict(loaded)


def test_settings_apply_to_the_block_and_its_children_then_go_back(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    before = default_device()
    with use_settings("cpu", "bf16", compile=True) as device:
        assert device == default_device() == torch.device("cpu")
        assert default_precision() == "bf16" and compile_enabled()
        # What a standard-NAS trial or a Ray worker started now inherits:
        assert os.environ[DEVICE_ENV] == "cpu" and os.environ[PRECISION_ENV] == "bf16"
        model = tiny_model("bert", "classification")
        assert _trainer(model, _batches(model, 1), None).precision.name == "bf16"
    assert default_device() == before and default_precision() == "fp32" and not compile_enabled()
    assert DEVICE_ENV not in os.environ and PRECISION_ENV not in os.environ
    monkeypatch.setenv(PRECISION_ENV, "fp16")  # a child process
    assert default_precision() == "fp16"


def test_devices_a_machine_lacks_are_refused_clearly(monkeypatch):
    with pytest.raises(NaspruneError, match="--device must be cpu, cuda or cuda:N, got 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NaspruneError, match="--device cuda:1: this machine has no CUDA GPU"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(NaspruneError, match="has 1 GPU"):
        resolve_device("cuda:1")


def test_cli_device_flag_errors_exit_2(tmp_path, capsys):
    from nasprune.cli import main

    status = main(["search", "--checkpoint", str(tmp_path / "none"), "--output-dir", str(tmp_path / "out"),
                   "--device", "gpu0", "--quiet"])
    assert status == 2
    assert "nasprune: error:" in capsys.readouterr().err


def test_loaders_pin_memory_only_for_a_gpu():
    import datasets

    from nasprune.data.batching import make_dataloader

    class Tokenizer:
        pad_token_id = 0

    dataset = datasets.Dataset.from_dict({"input_ids": [[1, 2], [3]], "attention_mask": [[1, 1], [1]], "labels": [0, 1]})
    with use_settings("cpu"):
        assert make_dataloader(dataset, Tokenizer(), 2).pin_memory is False
    assert make_dataloader(dataset, Tokenizer(), 2, pin_memory=True).pin_memory is True
