"""``nasprune baseline --method importance``: first-order importance, budgets, allocation, end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_batch, tiny_model, write_sentiment_csv, write_tiny_bert
from nasprune.baselines import importance_pruning, layer_drop, rfp
from nasprune.counting import ParameterCounter, count_macs
from nasprune.errors import NaspruneError
from nasprune.importance import mask_gradients
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training import TrainingConfig


def _labelled(model, n_batches=2, batch=5, seed=0):
    batches = []
    for i in range(n_batches):
        b = tiny_batch(model, batch=batch, seed=seed + i + 1)
        b["labels"] = torch.randint(0, model.config.num_labels, (batch,), generator=torch.Generator().manual_seed(seed + i))
        batches.append(b)
    return batches


def _hand_mask_gradients(model, batches):
    """Per-example ``dL/dm`` with masks applied by forward hooks on the plain HF model (not the super-network).

    A head's mask multiplies its slice of the self-attention context, a unit's mask its activation
    (the output of the intermediate module); the masks are 1, so the model's function is unchanged.
    """
    config = model.config
    layers, heads, units = config.num_hidden_layers, config.num_attention_heads, config.intermediate_size
    head_dim = config.hidden_size // heads
    head_grads, unit_grads = [], []
    for batch in batches:
        for i in range(len(batch["input_ids"])):
            head_mask = torch.ones(layers, heads, dtype=torch.float64, requires_grad=True)
            unit_mask = torch.ones(layers, units, dtype=torch.float64, requires_grad=True)
            hooks = []
            for index, layer in enumerate(model.bert.encoder.layer):
                def scale_context(module, args, output, index=index):
                    context = output[0] if isinstance(output, tuple) else output
                    shape = context.shape
                    scaled = (context.view(*shape[:-1], heads, head_dim) * head_mask[index][:, None]).view(shape)
                    return (scaled, *output[1:]) if isinstance(output, tuple) else scaled

                def scale_units(module, args, output, index=index):
                    return output * unit_mask[index]

                hooks.append(layer.attention.self.register_forward_hook(scale_context))
                hooks.append(layer.intermediate.register_forward_hook(scale_units))
            try:
                example = {k: v[i : i + 1] for k, v in batch.items() if k != "labels"}
                logits = model(**example).logits
                loss = torch.nn.functional.cross_entropy(logits, batch["labels"][i : i + 1])
                g_head, g_unit = torch.autograd.grad(loss, [head_mask, unit_mask])
            finally:
                for hook in hooks:
                    hook.remove()
            head_grads.append(g_head.numpy())
            unit_grads.append(g_unit.numpy())
    return np.stack(head_grads), np.stack(unit_grads)


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model("bert", "classification", dropout=0.0).double()
    supernet = SuperNetwork(model).eval()
    batches = _labelled(model)
    return model, supernet, batches, mask_gradients(supernet, batches)


def test_importance_ranks_equal_a_hand_computed_first_order_score(tiny):
    model, _, batches, gradients = tiny
    head_grads, unit_grads = _hand_mask_gradients(model, batches)
    # Taylor: |gradient x mask| at mask 1, summed over the examples.
    expected_head, expected_unit = np.abs(head_grads).sum(0), np.abs(unit_grads).sum(0)
    taylor = importance_pruning.first_order_importance(gradients, "taylor")
    np.testing.assert_allclose(taylor.head, expected_head, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(taylor.unit, expected_unit, rtol=1e-6, atol=1e-12)
    assert (np.argsort(-taylor.head, axis=None, kind="stable") == np.argsort(-expected_head, axis=None, kind="stable")).all()
    assert (np.argsort(-taylor.unit, axis=1, kind="stable") == np.argsort(-expected_unit, axis=1, kind="stable")).all()
    fisher = importance_pruning.first_order_importance(gradients, "fisher")
    np.testing.assert_allclose(fisher.head, np.square(head_grads).sum(0), rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(fisher.unit, np.square(unit_grads).sum(0), rtol=1e-6, atol=1e-15)
    with pytest.raises(NaspruneError, match="criterion"):
        importance_pruning.first_order_importance(gradients, "magnitude")


@pytest.mark.parametrize("allocation", importance_pruning.ALLOCATIONS)
@pytest.mark.parametrize("constraint", rfp.CONSTRAINTS)
def test_pruning_fits_the_budget_and_keeps_the_most_important(tiny, allocation, constraint):
    _, supernet, batches, _ = tiny
    pruner = importance_pruning.ImportancePruner(supernet, batches, "taylor", allocation, constraint, seq_len=16)
    shape, importance = supernet.shape, pruner.importance
    counter = ParameterCounter(supernet.model)
    full_macs = count_macs(SubNetwork.full(shape), shape, 16)
    previous = None
    for budget in (0.9, 0.7, 0.5, 0.3):
        result = pruner.prune(budget)
        subnet = result.subnet
        exact = count_macs(subnet, shape, 16) / full_macs if constraint == "macs" else counter.count(subnet) / counter.total
        assert exact <= budget + 1e-12 and result.relative_cost == pytest.approx(exact)
        assert exact > budget - 0.2  # uses its budget (the tiny model's shares are coarse)
        heads, units = subnet.head_mask, subnet.unit_mask
        if allocation == "uniform":
            assert len(set(heads.sum(1))) == 1 and len(set(units.sum(1))) == 1
            for i in range(shape.num_layers):  # the most important of each layer
                if heads[i].any() and not heads[i].all():
                    assert importance.head[i][heads[i]].min() >= importance.head[i][~heads[i]].max()
                if units[i].any() and not units[i].all():
                    assert importance.unit[i][units[i]].min() >= importance.unit[i][~units[i]].max()
        else:  # the most important across all layers
            assert importance.head[heads].min() >= importance.head[~heads].max()
            assert importance.unit[units].min() >= importance.unit[~units].max()
        # The same share of heads and of units (up to rounding down).
        assert abs(heads.mean() - units.mean()) <= 1 / (shape.num_heads if allocation == "uniform" else heads.size)
        if previous is not None:  # smaller budgets keep subsets
            assert not (heads & ~previous.head_mask).any() and not (units & ~previous.unit_mask).any()
        previous = subnet
    if constraint == "params":  # the embeddings alone exceed a tiny budget
        with pytest.raises(NaspruneError, match="below the smallest"):
            pruner.prune(0.01)
        assert [r.budget for r in pruner.sweep([0.5, 0.01])] == [0.5]


def test_allocations_differ_where_layers_differ():
    importance = importance_pruning.Importance(
        np.array([[4.0, 3.0, 2.0, 1.0], [0.4, 0.3, 0.2, 0.1]]), np.array([[1.0, 2.0], [3.0, 4.0]])
    )
    uniform = importance_pruning.allocate(importance, 0.5, "uniform")
    assert uniform.head_mask.tolist() == [[True, True, False, False], [True, True, False, False]]
    assert uniform.unit_mask.tolist() == [[False, True], [False, True]]
    global_ = importance_pruning.allocate(importance, 0.5, "global")
    assert global_.head_mask.tolist() == [[True, True, True, True], [False, False, False, False]]
    assert global_.unit_mask.tolist() == [[False, False], [True, True]]


# --- end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from nasprune.data import DataOptions
    from nasprune.workflows import train_supernet

    root = tmp_path_factory.mktemp("importance")
    write_tiny_bert(root / "model", num_layers=3, seed=3)
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    data = DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), max_seq_length=16)
    config = TrainingConfig(epochs=1, learning_rate=1e-3, batch_size=16, strategy="standard")
    checkpoint = train_supernet(str(root / "model"), data, config, "small", root / "finetune", progress=False)
    return root, checkpoint


REQUIRED_COLUMNS = ["trial_id", "valid_error", "test_error", "params", "relative_params", "macs", "relative_macs",
                    "elapsed_seconds", "num_layers", "heads_per_layer", "units_per_layer", "subnet", "pareto"]


@pytest.mark.parametrize("allocation,constraint", [("uniform", "macs"), ("global", "params")])
def test_baseline_importance_end_to_end(finetuned, tmp_path, monkeypatch, allocation, constraint):
    from nasprune.baselines import BaselineOptions, run_baseline
    from nasprune.export import SearchResults, check_row_has_weights

    root, checkpoint = finetuned
    monkeypatch.chdir(root)  # the checkpoint's data files are followed from the working directory
    tuned_copies = []
    original_finetune = layer_drop.finetune_subnet

    def spy(supernet, subnet, *args, **kwargs):
        before = {k: v.detach().clone() for k, v in supernet.model.state_dict().items()}
        tuned = original_finetune(supernet, subnet, *args, **kwargs)
        tuned_copies.append((before, supernet, subnet, tuned))
        return tuned

    monkeypatch.setattr(layer_drop, "finetune_subnet", spy)
    options = BaselineOptions(method="importance", allocation=allocation, constraint=constraint, budgets=(0.5, 0.8),
                              num_importance_samples=16, batch_size=8, epochs=1, learning_rate=1e-3)
    out = tmp_path / "importance"
    run_baseline(checkpoint, options, out, progress=False)

    table = pd.read_csv(out / "results.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert all(c in table.columns for c in REQUIRED_COLUMNS)
    assert table["test_error"].notna().all() and table["elapsed_seconds"].is_monotonic_increasing
    assert summary["method"] == "importance_pruning" and summary["search_space"] == "large"
    assert summary["complete"] is True and summary["baseline"]["allocation"] == allocation
    assert len(summary["pareto_set"]) == int(table["pareto"].sum()) >= 1
    assert (out / "pareto.png").stat().st_size > 0 and (out / "pareto.md").is_file()
    # One row per budget after the full model's, each within its budget.
    assert table["budget"].tolist() == [1.0, 0.8, 0.5]
    assert table.loc[0, "relative_params"] == 1.0 and table.loc[0, "relative_macs"] == 1.0
    relative = table[f"relative_{constraint}"]
    assert (relative <= table["budget"] + 1e-12).all() and (relative.iloc[1:] < 1).all()
    assert table["fine_tuned_epochs"].tolist() == [0, 1, 1]

    # Fine-tuning trained a copy per budget: its kept weights changed, the checkpoint's did not.
    assert len(tuned_copies) == 2
    for before, supernet, subnet, tuned in tuned_copies:
        after = supernet.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        tuned_state = tuned.model.state_dict()
        changed = [k for k in before if not torch.equal(before[k], tuned_state[k])]
        assert any("encoder.layer.0" in k for k in changed) and any("classifier" in k for k in changed)

    # Export refuses the fine-tuned rows (their weights are not in the checkpoint), not the full model.
    results = SearchResults.load(out)
    check_row_has_weights(results, table.iloc[0])
    for i in (1, 2):
        with pytest.raises(NaspruneError, match="importance-pruning baseline .* fine-tuned for 1 epoch"):
            check_row_has_weights(results, table.iloc[i])


def test_cli_flags_and_validation():
    import argparse

    from nasprune.baselines import BaselineOptions
    from nasprune.cli import baseline as cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    cli.add_arguments(parser)
    args = parser.parse_args(["--method", "importance", "--checkpoint", "ft", "--output-dir", "out",
                              "--importance", "fisher", "--allocation", "global", "--budgets", "0.4,0.5",
                              "--constraint", "params"])
    options = cli.options_from_args(args)
    assert (options.method, options.importance, options.allocation, options.budgets, options.epochs) == (
        "importance", "fisher", "global", (0.4, 0.5), 1)
    options.validate()
    with pytest.raises(NaspruneError, match="--allocation"):
        BaselineOptions(method="importance", allocation="layerwise").validate()
    with pytest.raises(NaspruneError, match="--importance"):
        BaselineOptions(method="importance", importance="l1").validate()
