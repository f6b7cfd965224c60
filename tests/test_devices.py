"""The paths a GPU run takes, on the device of ``NASPRUNE_TEST_DEVICE`` (the ``test_device`` fixture).

On a CPU machine they run on the CPU; ``experiments/gpu_check.sh`` runs them on CUDA, where they
check what only a GPU can break: tensors created on the wrong device, host copies, the trainer
state saved on the GPU and loaded on the CPU, timing that waits for the kernels.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from conftest import random_subnet, tiny_batch, tiny_model
from nasprune.checkpoint import load_training_state, save_training_state
from nasprune.evaluation import SubnetEvaluator
from nasprune.export import slice_subnetwork
from nasprune.latency import measure_latency, subnet_latency
from nasprune.spaces import get_search_space
from nasprune.supernet import SuperNetwork
from nasprune.training import Trainer, TrainingConfig, get_strategy


def _batches(model, n: int, device: torch.device | str = "cpu") -> list[dict]:
    batches = []
    for i in range(n):
        batch = tiny_batch(model, batch=4, seq_len=9, seed=10 + i)
        batch["labels"] = torch.arange(4) % model.config.num_labels
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def test_training_runs_on_the_device_and_its_state_resumes_from_the_cpu(test_device, tmp_path):
    model = tiny_model("bert", "classification").to(test_device)
    supernet = SuperNetwork(model)
    space = get_search_space("small", supernet.shape)
    config = TrainingConfig(epochs=1, learning_rate=1e-3, strategy="full")
    batches = _batches(model, 3)  # on the CPU: the trainer moves them
    trainer = Trainer(supernet, get_strategy("full", space, 1), batches, config, progress=False)
    history = trainer.train()
    assert np.isfinite(history[0].train_loss)
    assert all(p.device.type == test_device.type for p in model.parameters())
    save_training_state(tmp_path, trainer.state_dict())
    state = load_training_state(tmp_path)  # on the CPU, as the checkpoint module loads it
    assert all(t.device.type == "cpu" for t in state.get("cuda_rng", []) + [state["torch_rng"]])
    resumed = Trainer(SuperNetwork(copy.deepcopy(model)), get_strategy("full", space, 1), batches,
                      TrainingConfig(epochs=2, learning_rate=1e-3, strategy="full"), progress=False)
    resumed.load_state_dict(state)  # CPU RNG state stays on the CPU; the optimizer moves its own
    resumed.train()  # the optimizer's moments and step went to the parameters' device
    moments = [s["exp_avg"] for s in resumed.optimizer.state.values()]
    assert moments and all(m.device.type == test_device.type for m in moments)


def test_evaluation_on_the_device_equals_the_cpu(test_device):
    cpu_model = tiny_model("roberta", "classification")
    batches = _batches(cpu_model, 3)
    subnet = random_subnet(SuperNetwork(cpu_model).shape, seed=4, min_keep=1)
    want, labels = SubnetEvaluator(SuperNetwork(cpu_model), batches, _accuracy, precision="fp32").predict(subnet)
    on_device = SuperNetwork(copy.deepcopy(cpu_model).to(test_device))
    evaluator = SubnetEvaluator(on_device, batches, _accuracy, precision="fp32")
    got, got_labels = evaluator.predict(subnet)
    assert isinstance(got, np.ndarray) and np.array_equal(labels, got_labels)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert evaluator.error(subnet) == 1.0 - _accuracy(want, labels)


def test_exported_logits_on_the_device_equal_the_super_network(test_device):
    model = tiny_model("bert", "classification").to(test_device)
    supernet = SuperNetwork(model)
    subnet = random_subnet(supernet.shape, seed=2, min_keep=1)
    batch = {k: v.to(test_device) for k, v in tiny_batch(model).items()}
    pruned = slice_subnetwork(supernet, subnet)
    assert next(pruned.parameters()).device.type == test_device.type
    with torch.no_grad(), supernet.select(subnet):
        want = supernet(**batch)
        got = pruned(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_latency_is_timed_and_reported_on_the_device(test_device):
    model = tiny_model("bert", "classification").to(test_device)
    result = measure_latency(model, batch_size=2, seq_len=8, warmup=1, repeats=3)
    assert result["device"] == str(next(model.parameters()).device)
    assert result["device_name"] and result["compiled"] is False
    assert result["median_s"] > 0 and result["min_s"] <= result["median_s"]
    sliced = subnet_latency(SuperNetwork(model), random_subnet(SuperNetwork(model).shape, 1, min_keep=1),
                            batch_size=2, seq_len=8, warmup=1, repeats=3)
    assert sliced["device"] == result["device"] and sliced["params"] > 0
