"""Pruning baselines and rewiring on tiny random models: budgets, monotonicity, exactness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_batch, tiny_model, write_sentiment_csv, write_tiny_bert
from nasprune.baselines import head_pruning, layer_drop, reference_model, rfp
from nasprune.counting import ParameterCounter, count_macs
from nasprune.errors import NaspruneError
from nasprune.evaluation import plain_model_error
from nasprune.importance import Importance, mask_gradients
from nasprune.rewiring import Permutation, apply_permutation, compute_importance, importance_order, rewire
from nasprune.scales import MaskScales, apply_scales
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork, encoder_layers
from nasprune.training import TrainingConfig, label_loss


def _labelled(model, n_batches=2, batch=6, seed=0):
    """Tiny labelled batches for the model's task."""
    batches = []
    for i in range(n_batches):
        b = tiny_batch(model, batch=batch, seed=seed + i + 1)
        generator = torch.Generator().manual_seed(seed + i)
        if model.config.num_labels == 1 and "MultipleChoice" not in type(model).__name__:
            b["labels"] = torch.randn(batch, generator=generator)
        else:
            classes = 2 if "MultipleChoice" in type(model).__name__ else model.config.num_labels
            b["labels"] = torch.randint(0, classes, (batch,), generator=generator)
        batches.append(b)
    return batches


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def logits_with_scales(supernet, batch, head_scale, unit_scale, subnet=None):
    """The super-network's logits with real-valued head and unit scales (its ``scaled`` forward)."""
    with supernet.scaled(head_scale, unit_scale, subnet):
        return supernet(**batch)


# --- mask gradients ------------------------------------------------------------------------
def _double_supernet(family, task, n_batches, batch):
    """A tiny float64 super-network of ``family`` for ``task``, labelled batches, and whether it regresses."""
    model = tiny_model(family, task).double()
    return SuperNetwork(model).eval(), _labelled(model, n_batches=n_batches, batch=batch), task == "regression"


def _one_at_a_time(batch):
    """Single-example batches of ``batch``, each without its trailing padding columns."""
    singles = []
    for i in range(len(batch["input_ids"])):
        example = {k: v[i : i + 1] for k, v in batch.items()}
        length = int(example["attention_mask"].reshape(-1, example["attention_mask"].shape[-1]).any(0).nonzero().max()) + 1
        per_token = example["input_ids"].dim()
        singles.append({k: (v[..., :length] if v.dim() == per_token else v) for k, v in example.items()})
    return singles


@pytest.mark.parametrize("family,task", [("bert", "classification"), ("roberta", "multiple_choice"), ("bert", "regression")])
def test_mask_gradients_of_a_padded_batch_equal_those_taken_one_example_at_a_time(family, task):
    supernet, batches, regression = _double_supernet(family, task, n_batches=2, batch=5)
    full = SubNetwork.full(supernet.shape)
    head_mask = full.head_mask.copy()
    head_mask[0, 1] = False  # a pruned head still gets the gradient of adding it back
    subnet = SubNetwork(head_mask, full.unit_mask)
    batched = mask_gradients(supernet, batches, regression, subnet=subnet, max_examples=8)
    singles = [single for batch in batches for single in _one_at_a_time(batch)]
    alone = mask_gradients(supernet, singles, regression, subnet=subnet, max_examples=8)
    assert batched.num_examples == alone.num_examples == 8
    np.testing.assert_allclose(batched.head, alone.head, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batched.unit, alone.unit, rtol=1e-9, atol=1e-12)
    assert batched.head[:, 0, 1].any()


@pytest.mark.parametrize("family,task", [("bert", "classification"), ("roberta", "multiple_choice"), ("bert", "regression")])
def test_mask_gradients_are_per_example_derivatives(family, task):
    supernet, batches, regression = _double_supernet(family, task, n_batches=1, batch=3)
    grads = mask_gradients(supernet, batches, regression)
    shape = supernet.shape
    assert grads.head.shape == (3, shape.num_layers, shape.num_heads)
    assert grads.unit.shape == (3, shape.num_layers, shape.intermediate_size)

    example = {k: v[2:3] for k, v in batches[0].items()}
    heads = torch.ones(shape.num_layers, shape.num_heads, dtype=torch.float64)
    units = torch.ones(shape.num_layers, shape.intermediate_size, dtype=torch.float64)

    def loss(h, u):
        with torch.no_grad():
            return label_loss(logits_with_scales(supernet, example, h, u), example["labels"], regression).item()

    eps = 1e-6
    bumped = heads.clone()
    bumped[1, 2] += eps
    assert grads.head[2, 1, 2] == pytest.approx((loss(bumped, units) - loss(heads, units)) / eps, rel=1e-3, abs=1e-7)
    bumped = units.clone()
    bumped[2, 7] += eps
    assert grads.unit[2, 2, 7] == pytest.approx((loss(heads, bumped) - loss(heads, units)) / eps, rel=1e-3, abs=1e-7)
    # Fisher and Michel's importance are the per-example sums / means.
    assert np.allclose(grads.fisher().head, (grads.head**2).sum(0))
    assert np.allclose(grads.mean_abs().unit, np.abs(grads.unit).mean(0))


def test_scaled_logits_equal_the_supernetwork_and_skip_empty_blocks():
    model = tiny_model("bert", "classification")
    supernet = SuperNetwork(model, mode="mask").eval()
    batch = tiny_batch(model)
    subnet = SubNetwork.from_counts(supernet.shape, [4, 0, 2], [64, 10, 0])
    with torch.no_grad():
        with supernet.select(subnet):
            expected = supernet(**batch)
        got = logits_with_scales(
            supernet, batch, torch.tensor(subnet.head_mask, dtype=torch.float32),
            torch.tensor(subnet.unit_mask, dtype=torch.float32), subnet,
        )
    torch.testing.assert_close(got, expected)


# --- retraining-free pruning -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_pruner():
    model = tiny_model("bert", "classification", dropout=0.0)
    supernet = SuperNetwork(model).eval()
    return rfp.RetrainingFreePruner(supernet, _labelled(model), "macs", seq_len=16)


@pytest.mark.parametrize("constraint", rfp.CONSTRAINTS)
def test_mask_search_respects_the_exact_budget(bert_pruner, constraint):
    supernet = bert_pruner.supernet
    costs = rfp.CostModel(supernet.model, constraint, seq_len=16)
    counter = ParameterCounter(supernet.model)
    full_macs = count_macs(SubNetwork.full(supernet.shape), supernet.shape, 16)
    for budget in (0.25, 0.4, 0.55, 0.7, 0.85, 1.0):
        if budget < costs.minimum_relative:
            with pytest.raises(NaspruneError, match="below the smallest"):
                rfp.search_masks(bert_pruner.fisher, costs, budget)
            continue
        subnet = rfp.search_masks(bert_pruner.fisher, costs, budget)
        if constraint == "macs":
            assert count_macs(subnet, supernet.shape, 16) <= budget * full_macs
        else:
            assert counter.count(subnet) <= budget * counter.total
        # Nothing more would fit: adding the cheapest pruned mask breaks the budget.
        if budget < 1 and constraint == "macs":
            assert count_macs(subnet, supernet.shape, 16) + costs.unit_cost[0] > budget * full_macs
    assert rfp.search_masks(bert_pruner.fisher, costs, 1.0).is_full()


def test_mask_search_keeps_the_most_important_masks():
    model = tiny_model("bert", "classification", num_layers=2)
    shape = SuperNetwork(model).shape
    costs = rfp.CostModel(model, "macs", seq_len=8)
    head = np.zeros((2, 4))
    head[1, 3] = 100.0  # one head worth far more than the units it costs
    unit = np.tile(np.linspace(1, 0.01, 64), (2, 1))  # earlier units more important
    budget = (costs.head_cost[0] + 10 * costs.unit_cost[0]) / costs.total
    subnet = rfp.search_masks(Importance(head, unit), costs, budget)
    assert subnet.head_mask.sum() == 1 and subnet.head_mask[1, 3]
    # The 10 units of highest importance: the first 5 of each layer (ties: layer 0 first).
    assert subnet.unit_mask.sum() == 10
    assert subnet.unit_mask[:, :5].all()
    assert subnet.head_mask.shape == (shape.num_layers, shape.num_heads)


def test_rearrangement_minimises_the_block_fisher_of_the_pruned_set():
    # One example: pruning masks 0 and 1 together cancels, although each alone matters most.
    gradients = np.array([[1.0, -1.0, 0.9]])
    kept = np.array([True, False, False])  # the diagonal choice: keep the largest g^2
    rearranged = rfp.rearrange_layer(kept, gradients)
    assert rearranged.tolist() == [False, False, True]
    # Counts never change, and an optimal choice stays put.
    assert rfp.rearrange_layer(rearranged, gradients).tolist() == [False, False, True]
    assert rfp.rearrange_layer(np.ones(3, bool), gradients).all()


def test_rearrangement_never_increases_the_objective(bert_pruner):
    costs = bert_pruner.costs
    for budget in (0.3, 0.6):
        searched = rfp.search_masks(bert_pruner.fisher, costs, budget)
        rearranged = rfp.rearrange_masks(searched, bert_pruner.gradients)
        assert (rearranged.heads_per_layer == searched.heads_per_layer).all()
        assert (rearranged.units_per_layer == searched.units_per_layer).all()
        assert costs.cost(rearranged) == costs.cost(searched)
        before = rfp.pruned_fisher_loss(searched, bert_pruner.gradients)
        assert rfp.pruned_fisher_loss(rearranged, bert_pruner.gradients) <= before + 1e-12


def test_tuning_the_full_network_changes_nothing(bert_pruner):
    full = SubNetwork.full(bert_pruner.supernet.shape)
    scales = rfp.tune_masks(bert_pruner.supernet, full, bert_pruner.sample)
    assert np.allclose(scales.head, 1.0, atol=1e-4) and np.allclose(scales.unit, 1.0, atol=1e-4)


def test_tuned_scales_fold_exactly_into_a_copy():
    model = tiny_model("bert", "classification", dropout=0.0)
    supernet = SuperNetwork(model).eval()
    subnet = SubNetwork.from_counts(supernet.shape, [3, 0, 2], [40, 64, 8])
    rng = np.random.default_rng(0)
    scales = MaskScales(subnet.head_mask * rng.uniform(0.5, 1.5, subnet.head_mask.shape),
                        subnet.unit_mask * rng.uniform(0.5, 1.5, subnet.unit_mask.shape))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = SuperNetwork(apply_scales(model, subnet, scales)).eval()
    batch = tiny_batch(model)
    with torch.no_grad(), tuned.select(subnet):
        got = tuned(**batch)
        expected = logits_with_scales(
            supernet, batch, torch.tensor(scales.head, dtype=torch.float32),
            torch.tensor(scales.unit, dtype=torch.float32), subnet,
        )
    torch.testing.assert_close(got, expected)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # source untouched
    assert ParameterCounter(tuned.model).count(subnet) == ParameterCounter(model).count(subnet)


def test_tuning_reconstructs_a_pruned_layer_better():
    model = tiny_model("bert", "classification", num_layers=1, dropout=0.0)
    supernet = SuperNetwork(model).eval()
    shape = supernet.shape
    batches = _labelled(model)
    subnet = SubNetwork.from_counts(shape, [2], [32])
    scales = rfp.tune_masks(supernet, subnet, batches)
    modules = encoder_layers(supernet)[0]
    heads = subnet.head_indices(0)

    def attention_error(values):
        total = 0.0
        with torch.no_grad():
            for batch in batches:
                x, mask = supernet.embed(**_inputs(batch))
                target = rfp._attention_teacher(x, mask, modules, shape)
                parts = rfp._head_outputs(x, mask, modules, heads, shape.head_dim)
                out = torch.einsum("k,kntd->ntd", torch.tensor(values, dtype=x.dtype), parts) + modules.attn_out.bias + x
                total += float(((out - target)[batch["attention_mask"].bool()] ** 2).sum())
        return total

    assert attention_error(scales.head[0, heads]) < attention_error(np.ones(len(heads)))
    assert not np.allclose(scales.head[0, heads], 1.0)
    assert (scales.head[0, ~subnet.head_mask[0]] == 0).all()


def test_pruner_sweep_skips_infeasible_budgets(bert_pruner):
    pruner = rfp.RetrainingFreePruner(bert_pruner.supernet, bert_pruner.sample, "params", seq_len=16, tune=False)
    results = pruner.sweep([0.05, 0.6, 0.9])
    assert [r.budget for r in results] == [0.6, 0.9]
    for r in results:
        assert r.relative_cost <= r.budget
        assert r.relative_cost == ParameterCounter(bert_pruner.supernet.model).relative(r.subnet)


# --- head pruning --------------------------------------------------------------------------
def test_layer_normalisation_of_head_importance():
    scores = np.array([[3.0, 4.0, 1.0], [0.0, 2.0, 0.0]])
    kept = np.array([[True, True, False], [False, False, False]])
    assert np.allclose(head_pruning.normalise_per_layer(scores, kept), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])


def test_iterative_head_pruning_removes_heads_monotonically():
    model = tiny_model("bert", "classification", num_layers=3, dropout=0.0)
    supernet = SuperNetwork(model).eval()
    seen = []
    steps = head_pruning.iterative_head_pruning(
        supernet, _labelled(model), fraction=0.1, on_step=lambda i, s: seen.append(i)
    )
    heads = [int(s.head_mask.sum()) for s in steps]
    assert heads == [12, 10, 8, 6, 4, 2]  # ceil(10% of 12) = 2 heads per step, at least 1 left
    assert seen == list(range(len(steps)))
    for before, after in zip(steps, steps[1:]):
        assert not (after.head_mask & ~before.head_mask).any()  # a pruned head stays pruned
        assert after.unit_mask.all()


def test_prune_least_important_breaks_ties_by_index():
    subnet = SubNetwork(np.ones((2, 2), bool), np.ones((2, 3), bool))
    pruned = head_pruning.prune_least_important(subnet, np.array([[0.5, 0.1], [0.1, 0.9]]), 2)
    assert pruned.head_mask.tolist() == [[True, False], [False, True]]


# --- layer dropping ------------------------------------------------------------------------
def test_layer_drop_keeps_the_bottom_layers():
    shape = SuperNetwork(tiny_model("bert", "classification", num_layers=4)).shape
    subnets = layer_drop.layer_drop_subnets(shape)
    assert [k for k, _ in subnets] == [0, 1, 2, 3]
    for k, subnet in subnets:
        assert subnet.kept_layers == list(range(4 - k))
        assert subnet.head_mask[: 4 - k].all() and subnet.unit_mask[: 4 - k].all()
        assert not subnet.head_mask[4 - k :].any() and not subnet.unit_mask[4 - k :].any()


def test_finetuning_a_dropped_model_trains_a_copy_of_the_kept_layers():
    model = tiny_model("bert", "classification", num_layers=3)
    supernet = SuperNetwork(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    subnet = layer_drop.top_layers_dropped(supernet.shape, 1)
    config = TrainingConfig(epochs=1, learning_rate=1e-2, batch_size=6, strategy="standard")
    tuned = layer_drop.finetune_subnet(supernet, subnet, _labelled(model), config)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    after = tuned.model.state_dict()
    assert not torch.equal(after["bert.encoder.layer.0.attention.self.query.weight"], before["bert.encoder.layer.0.attention.self.query.weight"])
    # The dropped layer gets no gradient, so AdamW leaves it alone.
    assert torch.equal(after["bert.encoder.layer.2.output.dense.weight"], before["bert.encoder.layer.2.output.dense.weight"])


# --- reference model -----------------------------------------------------------------------
def test_reference_size_is_relative_to_the_pruned_models_full_size():
    big = tiny_model("bert", "classification", num_layers=4)
    small = tiny_model("bert", "classification", num_layers=2)
    full = ParameterCounter(big)
    size = reference_model.reference_size(small, full.total, full.shape, 16)
    assert size.params == sum(p.numel() for p in small.parameters())
    assert size.relative_params == size.params / full.total
    assert size.relative_macs == pytest.approx(0.5)
    from transformers import DistilBertConfig

    # DistilBERT names its FFN width hidden_dim; a supported family is not needed for a reference.
    config = DistilBertConfig(n_layers=2, n_heads=4, dim=32, hidden_dim=48)
    assert reference_model.model_shape(config) == ModelShape(2, 4, 8, 32, 48)


def test_reference_model_finetunes():
    model = tiny_model("bert", "classification", num_layers=1)
    batches = _labelled(model, n_batches=2)
    error = lambda: plain_model_error(model, batches, lambda logits, labels: float(np.mean(logits.argmax(1) == labels)))
    before = error()
    reference_model.finetune_model(model, batches, TrainingConfig(epochs=20, learning_rate=1e-2, batch_size=6))
    assert error() < before


# --- rewiring ------------------------------------------------------------------------------
@pytest.mark.parametrize("family,task", [("bert", "classification"), ("roberta", "multiple_choice")])
def test_rewiring_keeps_the_function_and_sorts_by_importance(family, task):
    model = tiny_model(family, task, dropout=0.0)
    supernet = SuperNetwork(model).eval()
    batches = _labelled(model, n_batches=1)
    batch = _inputs(batches[0])
    with torch.no_grad():
        before = supernet(**batch)
    importance = compute_importance(supernet, batches)
    permutation = rewire(supernet, importance)
    with torch.no_grad():
        after = supernet(**batch)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(permutation.head, np.tile(np.arange(4), (3, 1)))
    # The rewired model's importance is its old importance in the new order: sorted, descending.
    again = compute_importance(supernet, batches)
    assert np.allclose(again.head, np.take_along_axis(importance.head, permutation.head, 1), rtol=1e-3, atol=1e-9)
    assert (np.diff(again.unit, axis=1) <= 1e-6 * again.unit.max()).all()


def test_rewiring_moves_the_important_heads_first():
    model = tiny_model("bert", "classification", num_layers=1)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    head = np.array([[0.1, 0.9, 0.5, 0.2]])
    unit = np.arange(64, dtype=float)[None, :]  # the last unit is the most important
    permutation = rewire(model, (head, unit))
    assert permutation.head.tolist() == [[1, 2, 3, 0]] and permutation.unit[0, 0] == 63
    q = model.state_dict()["bert.encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(q[:8], original["bert.encoder.layer.0.attention.self.query.weight"][8:16])
    out = model.state_dict()["bert.encoder.layer.0.output.dense.weight"]
    assert torch.equal(out[:, 0], original["bert.encoder.layer.0.output.dense.weight"][:, 63])
    assert importance_order(Importance(head, unit)).head.tolist() == [[1, 2, 3, 0]]
    with pytest.raises(NaspruneError):
        apply_permutation(model, Permutation(np.array([[0, 0, 1, 2]]), permutation.unit))
    assert Permutation.from_dict(json.loads(json.dumps(permutation.to_dict()))).head.tolist() == [[1, 2, 3, 0]]


# --- nasprune baseline end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from nasprune.data import DataOptions
    from nasprune.workflows import train_supernet

    root = tmp_path_factory.mktemp("baselines")
    write_tiny_bert(root / "model", num_layers=3, seed=3)
    write_tiny_bert(root / "small-model", num_layers=1, seed=1)
    for split, n, seed in (("train", 64, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    data = DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), max_seq_length=16)
    config = TrainingConfig(epochs=1, learning_rate=1e-3, batch_size=16, strategy="standard")
    checkpoint = train_supernet(str(root / "model"), data, config, "small", root / "finetune", progress=False)
    return root, checkpoint


REQUIRED_COLUMNS = ["trial_id", "valid_error", "test_error", "params", "relative_params", "macs", "relative_macs",
                    "elapsed_seconds", "num_layers", "heads_per_layer", "units_per_layer", "subnet", "pareto"]


def _check_outputs(out, method):
    table = pd.read_csv(out / "results.csv")
    assert all(c in table.columns for c in REQUIRED_COLUMNS)
    assert table["test_error"].notna().all() and table["elapsed_seconds"].is_monotonic_increasing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["objectives"] == ["valid_error", "relative_params"]
    # Normalised units up to the reference point 1.1: at most 1.1 x 1.1.
    assert 0 <= summary["hypervolume"] <= 1.1 * 1.1 and summary["reference_point"] == [1.1, 1.1]
    assert summary["complete"] is True and "1.1" in summary["hypervolume_definition"]
    assert len(summary["pareto_set"]) == int(table["pareto"].sum()) >= 1
    assert (out / "pareto.png").stat().st_size > 0 and (out / "pareto.md").is_file()
    return table, summary


def test_baseline_rfp_end_to_end(finetuned, tmp_path, monkeypatch):
    from nasprune.baselines import BaselineOptions, run_baseline
    from nasprune.export import subnet_from_row

    root, checkpoint = finetuned
    monkeypatch.chdir(root)  # the checkpoint's data files are followed from the working directory
    options = BaselineOptions(method="rfp", budgets=(0.4, 0.7), num_importance_samples=32, num_tuning_samples=16, batch_size=8)
    run_baseline(checkpoint, options, tmp_path / "rfp", progress=False)
    table, summary = _check_outputs(tmp_path / "rfp", "rfp")
    assert table["budget"].tolist() == [1.0, 0.7, 0.4]
    assert (table["relative_macs"] <= table["budget"] + 1e-12).all()
    assert table.loc[0, "relative_params"] == 1.0 and summary["search_space"] == "large"
    scales = json.loads((tmp_path / "rfp" / "mask_scales.json").read_text())
    for trial in ("1", "2"):
        subnet = subnet_from_row(table.iloc[int(trial)])
        assert [len(h) for h in scales[trial]["heads"]] == subnet.heads_per_layer.tolist()


def test_baseline_head_pruning_and_layer_drop_end_to_end(finetuned, tmp_path, monkeypatch):
    from nasprune.baselines import BaselineOptions, run_baseline

    root, checkpoint = finetuned
    monkeypatch.chdir(root)
    run_baseline(checkpoint, BaselineOptions(method="head-pruning", prune_fraction=0.25, num_importance_samples=16),
                 tmp_path / "heads", progress=False)
    table, _ = _check_outputs(tmp_path / "heads", "head_pruning")
    heads = [sum(json.loads(h)) for h in table["heads_per_layer"]]
    assert heads == [12, 9, 6, 3] and table["units_per_layer"].nunique() == 1

    run_baseline(checkpoint, BaselineOptions(method="layer-drop", epochs=1, learning_rate=1e-3, batch_size=16),
                 tmp_path / "layers", progress=False)
    table, summary = _check_outputs(tmp_path / "layers", "layer_drop")
    assert table["num_layers"].tolist() == [3, 2, 1] and table["dropped_layers"].tolist() == [0, 1, 2]
    assert table["relative_params"].is_monotonic_decreasing and summary["search_space"] == "layer"


def test_baseline_reference_model_and_cli_glue(finetuned, tmp_path, capsys, monkeypatch):
    import argparse

    from nasprune.cli import baseline as runner

    root, checkpoint = finetuned
    monkeypatch.chdir(root)
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    runner.add_arguments(parser)
    args = parser.parse_args(["--quiet", "--method", "model", "--checkpoint", str(root / "finetune"),
                              "--reference-model", str(root / "small-model"), "--epochs", "1",
                              "--output-dir", str(tmp_path / "ref"), "--max-test-samples", "10"])
    runner.run_from_args(args)
    table, summary = _check_outputs(tmp_path / "ref", "reference_model")
    assert len(table) == 1 and table.loc[0, "relative_macs"] == pytest.approx(1 / 3)
    full = ParameterCounter(SuperNetwork.from_pretrained(str(checkpoint))).total
    assert table.loc[0, "params"] / full == pytest.approx(table.loc[0, "relative_params"])
    assert "Pareto set" in capsys.readouterr().out
    with pytest.raises(NaspruneError, match="reference-model"):
        runner.BaselineOptions(method="model").validate()
    with pytest.raises(NaspruneError, match="budgets"):
        runner.BaselineOptions(budgets=(0.5, 1.5)).validate()


def _tiny_data_options(root):
    from nasprune.data import DataOptions

    return DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), max_seq_length=16)


def test_train_supernet_rewires_the_start_model_by_the_finetuned_importance(finetuned, tmp_path):
    from nasprune import data
    from nasprune.rewiring import RewiringOptions
    from nasprune.session import load_tokenizer
    from nasprune.workflows import train_supernet

    root, checkpoint = finetuned
    # A learning rate of 1e-12 leaves the weights where rewiring put them, to float precision.
    config = TrainingConfig(epochs=1, learning_rate=1e-12, batch_size=16, strategy="sandwich")
    options = RewiringOptions(num_examples=24, source=str(root / "finetune"))
    trained = train_supernet(str(root / "model"), _tiny_data_options(root), config, "small", tmp_path / "sn",
                             progress=False, rewiring=options)
    record = json.loads((trained / "nasprune.json").read_text())["rewiring"]
    assert record["source"] == str(checkpoint) and record["importance"] == "fisher"
    permutation = Permutation.from_dict(record)

    # The order is the fine-tuned checkpoint's Fisher importance on the same seeded sample.
    judge = SuperNetwork.from_pretrained(str(checkpoint)).eval()
    tokenizer = load_tokenizer(str(checkpoint))
    task_data = _tiny_data_options(root).load()
    sample = data.subsample(data.prepare(task_data, tokenizer, 16)["train"], 24, config.seed)
    loader = data.make_dataloader(sample, tokenizer, 16, shuffle=False, sort_by_length=True)
    expected = importance_order(compute_importance(judge, loader, max_examples=24))
    assert permutation.head.tolist() == expected.head.tolist() and permutation.unit.tolist() == expected.unit.tolist()
    assert (permutation.head != np.arange(4)).any()

    start = SuperNetwork.from_pretrained(str(root / "model")).eval()
    rewired = SuperNetwork.from_pretrained(str(trained)).eval()
    key = "bert.encoder.layer.1.attention.self.value.weight"
    head = int(permutation.head[1, 0])
    torch.testing.assert_close(rewired.model.state_dict()[key][:8], start.model.state_dict()[key][head * 8 : head * 8 + 8])
    batch = tiny_batch(start.model, seq_len=6)
    batch["input_ids"] = batch["input_ids"].clamp(max=start.config.vocab_size - 1)
    with torch.no_grad():  # same function, other order
        torch.testing.assert_close(rewired.model.bert(**batch).last_hidden_state, start.model.bert(**batch).last_hidden_state)


def test_rewiring_an_encoder_without_a_task_head_fine_tunes_a_copy_first(finetuned, tmp_path, monkeypatch):
    from transformers import AutoTokenizer, BertModel

    from nasprune.checkpoint import CheckpointInfo
    from nasprune.report import load_run
    from nasprune.rewiring import RewiringOptions
    from nasprune.workflows import train_supernet

    root, _ = finetuned
    BertModel.from_pretrained(str(root / "model")).save_pretrained(tmp_path / "encoder")
    AutoTokenizer.from_pretrained(str(root / "model")).save_pretrained(tmp_path / "encoder")
    config = TrainingConfig(epochs=1, learning_rate=1e-3, batch_size=16, strategy="sandwich")
    monkeypatch.chdir(tmp_path)  # an output folder named relative to where the command runs
    trained = train_supernet("encoder", _tiny_data_options(root), config, "small", Path("sn"),
                             progress=False, rewiring=RewiringOptions(num_examples=16, finetune_examples=40))
    info = json.loads((trained / "nasprune.json").read_text())
    record = info["rewiring"]
    # Recorded absolute, so it still names the fine-tuned copy when read from another folder.
    assert record["source"] == str((tmp_path / "sn" / "rewiring-finetune" / "epoch-1").resolve())
    source_info = json.loads((Path(record["source"]) / "nasprune.json").read_text())
    assert source_info["strategy"] == "standard" and len(source_info["history"]) == 1
    # The copy is fine-tuned on 40 of the training examples; the super-network trains on all of them.
    assert source_info["data_options"]["max_train_samples"] == 40
    assert info["data_options"]["max_train_samples"] == _tiny_data_options(root).max_train_samples != 40
    assert record["requested"]["finetune_examples"] == 40
    assert isinstance(record["seconds"], float) and record["seconds"] > 0
    # A measurement, not a setting: the fingerprint does not depend on it.
    assert "seconds" not in CheckpointInfo.load(trained).settings()["rewiring"]

    # compare's time axis charges the fine-tuned copy, the rewiring and the super-network's epochs.
    run_dir = tmp_path / "search"
    run_dir.mkdir()
    pd.DataFrame({"valid_error": [0.5], "relative_params": [0.5], "elapsed_seconds": [1.0]}).to_csv(
        run_dir / "results.csv", index=False)
    (run_dir / "summary.json").write_text(json.dumps({"task": "custom", "checkpoint": str(trained.resolve())}))
    monkeypatch.chdir(root)
    run = load_run(run_dir)
    assert run.rewiring_source == Path(record["source"])
    expected = source_info["history"][0]["seconds"] + record["seconds"] + info["history"][0]["seconds"]
    assert run.seconds_before_search == pytest.approx(expected)
    assert run.training_seconds == pytest.approx(info["history"][0]["seconds"])
    with pytest.raises(NaspruneError, match="rewire-importance"):
        train_supernet(str(tmp_path / "encoder"), _tiny_data_options(root), config, "small", tmp_path / "x",
                       rewiring=RewiringOptions(importance="magnitude"))
    with pytest.raises(NaspruneError, match="rewire-finetune-examples"):
        train_supernet(str(tmp_path / "encoder"), _tiny_data_options(root), config, "small", tmp_path / "x",
                       rewiring=RewiringOptions(finetune_examples=0))
    # A run trained without rewiring cannot be resumed with it: the first step is long gone.
    plain = TrainingConfig(epochs=2, learning_rate=1e-3, batch_size=16, strategy="standard")
    with pytest.raises(NaspruneError, match="--rewire off -> importance=fisher"):
        train_supernet(str(root / "model"), _tiny_data_options(root), plain, "small", root / "finetune",
                       progress=False, rewiring=RewiringOptions(num_examples=16))


def test_a_baseline_refuses_another_runs_folder_unless_told(finetuned, tmp_path, monkeypatch):
    from nasprune.baselines import BaselineOptions, run_baseline

    root, checkpoint = finetuned
    monkeypatch.chdir(root)
    out = tmp_path / "out"
    run_baseline(checkpoint, BaselineOptions(method="head-pruning", prune_fraction=0.5, num_importance_samples=16),
                 out, progress=False)
    before = (out / "results.csv").read_text()
    rfp_options = BaselineOptions(method="rfp", budgets=(0.5,), num_importance_samples=16, num_tuning_samples=8, batch_size=8)
    with pytest.raises(NaspruneError, match="method: head_pruning there, rfp now"):
        run_baseline(checkpoint, rfp_options, out, progress=False)
    assert (out / "results.csv").read_text() == before  # nothing of the first run is lost
    run_baseline(checkpoint, rfp_options, out, progress=False, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["method"] == "rfp"
