"""Recovery training of chosen sub-networks: it improves a damaged sub-network, ``export
--finetune-epochs`` records errors measured before and after, ``recover`` writes a valid front."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_sentiment_csv, write_tiny_bert

from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.export import EXPORT_META_FILE, measure_exported_model, pareto_front, subnet_from_row
from nasprune.recovery import Recovery, RecoveryOptions, recover_front
from nasprune.results import PARETO_COLUMNS
from nasprune.session import CheckpointSession
from nasprune.subnet import SubNetwork

CPU = torch.device("cpu")


def _files(root) -> dict[str, str]:
    return {f"{name}_file": str(root / f"{split}.csv") for name, split in
            (("train", "train"), ("validation", "valid"), ("test", "test"))}


def _checkpoint(root, epochs: int, learning_rate: float):
    from nasprune.data import DataOptions
    from nasprune.training import TrainingConfig
    from nasprune.workflows import train_supernet

    data = DataOptions(max_seq_length=16, **_files(root))
    config = TrainingConfig(epochs=epochs, learning_rate=learning_rate, batch_size=16, strategy="standard")
    return train_supernet(str(root / "model"), data, config, "small", root / f"ckpt-{epochs}-{learning_rate:g}",
                          progress=False, device=CPU)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A tiny BERT and a tiny sentiment task (the label decides the words), and two checkpoints: one
    trained well (a good teacher), one barely trained (every sub-network is damaged)."""
    root = tmp_path_factory.mktemp("recovery")
    write_tiny_bert(root / "model", num_layers=2, seed=3)
    for split, n, seed in (("train", 160, 0), ("valid", 60, 1), ("test", 60, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    return root, _checkpoint(root, 4, 1e-3), _checkpoint(root, 1, 1e-7)


@pytest.fixture(scope="module")
def weak_search(task):
    """A weight-sharing search of the barely trained checkpoint."""
    from nasprune.workflows import SearchOptions, search

    root, _, weak = task
    search(weak, SearchOptions(method="random_search", num_samples=8, seed=0), root / "search",
           data_overrides=_files(root), progress=False, device=CPU)
    return root / "search"


def _half(shape) -> SubNetwork:
    heads = np.zeros((shape.num_layers, shape.num_heads), bool)
    units = np.zeros((shape.num_layers, shape.intermediate_size), bool)
    heads[:, : max(1, shape.num_heads // 2)] = True
    units[:, : shape.intermediate_size // 2] = True
    return SubNetwork(heads, units)


def _independent_errors(supernet, subnet, session) -> tuple[float, float]:
    loaders = session.eval_loaders(7)
    metric = session.task_data.metric
    return tuple(SubnetEvaluator(supernet.eval(), loaders[split], metric, cache_embeddings=False).error(subnet)
                 for split in ("validation", "test"))


# --- the training itself -----------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["distill", "ce"])
def test_recovery_improves_a_damaged_subnetwork_and_leaves_its_source_alone(task, loss):
    root, good, _ = task
    session = CheckpointSession(good, _files(root), CPU)
    supernet = session.load_supernet()
    subnet = _half(supernet.shape)
    torch.manual_seed(0)
    with torch.no_grad():  # damage the encoder: the full model, the teacher, is loaded afresh
        for name, param in supernet.model.named_parameters():
            if "encoder" in name and param.ndim == 2:
                param.add_(torch.randn_like(param) * param.abs().mean() * 3)
    damaged = copy.deepcopy(supernet.model.state_dict())
    recovery = Recovery(session, RecoveryOptions(epochs=4, loss=loss, learning_rate=3e-3), CPU)
    before = recovery.measure(supernet, subnet)
    recovered = recovery.train(supernet, subnet)
    after = recovery.measure(recovered.supernet, subnet)

    assert after["valid_error"] < before["valid_error"]
    assert after["params"] == before["params"] and after["macs"] == before["macs"]
    assert recovered.seconds > 0
    # Measured, as an independent evaluator measures them.
    independent = _independent_errors(supernet, subnet, session)
    assert (before["valid_error"], before["test_error"]) == pytest.approx(independent)
    assert (after["valid_error"], after["test_error"]) == pytest.approx(
        _independent_errors(recovered.supernet, subnet, session))
    # The source is a copy's origin, not trained in place; the teacher is frozen.
    assert all(torch.equal(v, damaged[k]) for k, v in supernet.model.state_dict().items())
    if loss == "distill":
        assert not recovery.teacher.training and not any(p.requires_grad for p in recovery.teacher.parameters())
    assert recovery.settings()["loss"] == loss and recovery.settings()["learning_rate"] == 3e-3


def test_recovery_defaults_come_from_the_checkpoint_and_bad_settings_are_refused(task):
    root, good, _ = task
    session = CheckpointSession(good, _files(root), CPU)
    recovery = Recovery(session, RecoveryOptions(epochs=1), CPU)
    training = session.info.training
    settings = recovery.settings()
    assert settings["learning_rate"] == training["learning_rate"]
    assert settings["batch_size"] == training["batch_size"]
    assert settings["temperature"] == training["temperature"]
    assert settings["train_examples"] == 160
    for bad in (RecoveryOptions(epochs=-1), RecoveryOptions(loss="mse"), RecoveryOptions(learning_rate=0.0)):
        with pytest.raises(NaspruneError):
            bad.validate()


# --- export --finetune-epochs --------------------------------------------------------------------
def test_export_with_recovery_records_errors_measured_before_and_after(task, weak_search, tmp_path):
    from nasprune.workflows import export

    root, _, weak = task
    front = pareto_front(pd.read_csv(weak_search / "results.csv"))
    # The point with the most heads: a barely trained model's sub-network, which recovery can improve.
    pick = int(np.argmax([subnet_from_row(r).heads_per_layer.sum() for _, r in front.iterrows()]))
    subnet = subnet_from_row(front.iloc[pick])
    out = export(weak, weak_search, tmp_path / "exported", pick=pick, eval_batch_size=9, device=CPU,
                 data_overrides=_files(root), recovery=RecoveryOptions(epochs=4, loss="ce", learning_rate=3e-3))
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    recovery = meta["recovery"]
    assert recovery["epochs"] == 4 and recovery["loss"] == "ce" and recovery["learning_rate"] == 3e-3
    assert recovery["batch_size"] == 16 and recovery["seconds"] > 0

    session = CheckpointSession(weak, _files(root), CPU)
    # Before: the checkpoint's sub-network, measured independently (and as the search measured it).
    before = _independent_errors(session.load_supernet(), subnet, session)
    assert (recovery["valid_error_before"], recovery["test_error_before"]) == pytest.approx(before)
    assert recovery["valid_error_before"] == pytest.approx(front.iloc[pick]["valid_error"])
    # After: the exported model, loaded back and measured again.
    again = measure_exported_model(out, session.task_data, 16, 5)
    assert recovery["valid_error_after"] == pytest.approx(again["valid_error"]) == pytest.approx(meta["valid_error"])
    assert recovery["test_error_after"] == pytest.approx(again["test_error"]) == pytest.approx(meta["test_error"])
    assert recovery["valid_error_after"] < recovery["valid_error_before"]
    assert meta["searched"]["valid_error"] == pytest.approx(front.iloc[pick]["valid_error"])

    # Without recovery nothing is recorded about it; with --no-evaluate it is refused.
    plain = export(weak, weak_search, tmp_path / "plain", pick=pick, device=CPU, data_overrides=_files(root))
    assert "recovery" not in json.loads((plain / EXPORT_META_FILE).read_text())
    with pytest.raises(NaspruneError, match="--no-evaluate"):
        export(weak, weak_search, tmp_path / "x", pick=pick, evaluate=False, recovery=RecoveryOptions(epochs=1))


# --- recover -------------------------------------------------------------------------------------
def test_recover_writes_a_valid_front_that_export_refuses_and_compare_reads(task, weak_search, tmp_path, capsys):
    from nasprune.cli import main

    root, _, weak = task
    files = [token for name, path in _files(root).items() for token in (f"--{name.replace('_', '-')}", path)]
    out = tmp_path / "recovered"
    assert main(["--quiet", "recover", str(weak_search), "--checkpoint", str(weak), "--output-dir", str(out),
                 "--recovery-loss", "ce", "--finetune-learning-rate", "3e-3", "--finetune-epochs", "2", *files]) == 0
    assert "recovered" in capsys.readouterr().out

    source = pd.read_csv(weak_search / "results.csv")
    source_front = pareto_front(source)
    table = pd.read_csv(out / "results.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["method"] == "random_search+recovery"
    assert summary["num_evaluated"] == len(table) == len(source_front)
    assert sorted(table["trial_id"]) == sorted(source_front["trial_id"])
    for column in ("valid_error", "test_error", "params", "relative_params", "macs", "relative_macs", "pareto",
                   "subnet", "heads_per_layer", "valid_error_before", "test_error_before", "recovery_seconds"):
        assert column in table.columns, column
    merged = table.merge(source_front, on="trial_id", suffixes=("", "_source"))
    # The same sub-networks and sizes; the errors before are those the search measured on the same weights.
    assert (merged["subnet"] == merged["subnet_source"]).all()
    assert (merged["params"] == merged["params_source"]).all()
    np.testing.assert_allclose(merged["valid_error_before"], merged["valid_error_source"])
    np.testing.assert_allclose(merged["test_error_before"], merged["test_error_source"])
    assert np.isfinite(table["valid_error"]).all() and np.isfinite(table["test_error"]).all()
    assert summary["recovery"]["epochs"] == 2 and summary["recovery"]["loss"] == "ce"
    assert summary["recovery"]["source_method"] == "random_search"
    assert summary["checkpoint_fingerprint"] == json.loads((weak_search / "summary.json").read_text())[
        "checkpoint_fingerprint"]
    assert summary["full_model"]["valid_error"] == pytest.approx(
        json.loads((weak_search / "summary.json").read_text())["full_model"]["valid_error"])
    assert len(summary["pareto_set"]) == int(table["pareto"].sum()) >= 1
    assert set(summary["pareto_set"][0]) >= {"trial_id", "subnet"} | (set(PARETO_COLUMNS) & set(table.columns))
    for name in ("pareto.md", "pareto.png"):
        assert (out / name).is_file()

    # Its weights were not kept: export refuses it, in one line.
    assert main(["--quiet", "export", "--checkpoint", str(weak), "--results", str(out), "--pick", "0",
                 "--output-dir", str(tmp_path / "e"), *files]) == 2
    err = capsys.readouterr().err
    assert "recovered front" in err and len(err.strip().splitlines()) == 1
    # Nor can a recovered front be recovered again.
    with pytest.raises(NaspruneError, match="recovered front"):
        recover_front(out, weak, tmp_path / "again", RecoveryOptions(epochs=1), data_overrides=_files(root))

    # compare shows the fronts before and after side by side.
    assert main(["--quiet", "compare", str(weak_search), str(out), "--output-dir", str(tmp_path / "cmp"),
                 "--bootstrap", "10"]) == 0
    shown = capsys.readouterr().out
    assert "random_search+recovery" in shown or any(
        "random_search+recovery" in p.read_text() for p in (tmp_path / "cmp").glob("*.md"))
