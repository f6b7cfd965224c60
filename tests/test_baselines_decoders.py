"""The pruning baselines on decoders: valid sub-networks under grouped-query attention (GQA), costs
that count the key/value heads a dropped group frees, and ``nasprune baseline`` from the command line
on tiny random Llama (GQA) and GPT-2 models, for classification and ``--task lm``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_sentiment_csv
from tiny_decoders import WORDS, make_tokenizer, write_jsonl, write_text

from nasprune.baselines import BASELINE_METHODS, grouped, head_pruning, importance_pruning, rfp
from nasprune.counting import ParameterCounter, count_macs
from nasprune.errors import NaspruneError
from nasprune.export import subnet_from_row
from nasprune.importance import Importance, MaskGradients
from nasprune.subnet import ModelShape, SubNetwork

#: 8 query heads on 2 key/value heads: groups of 4, so heads can go by whole groups or within them.
GQA = ModelShape(num_layers=3, num_heads=8, head_dim=4, hidden_size=32, intermediate_size=12, gated_ffn=True,
                 num_kv_heads=2, causal=True)


def tiny_llama(task: str = "classification", seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    settings = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=24, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=64,
                    tie_word_embeddings=False, eos_token_id=1, bos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    config = LlamaConfig(**{**settings, **overrides})
    return (LlamaForCausalLM if task == "causal_lm" else LlamaForSequenceClassification)(config).eval()


def random_importance(shape: ModelShape, seed: int) -> Importance:
    rng = np.random.default_rng(seed)
    return Importance(rng.random((shape.num_layers, shape.num_heads)), rng.random((shape.num_layers, shape.intermediate_size)))


# --- the valid removal path ----------------------------------------------------------------------
def test_the_removal_path_passes_through_valid_nested_masks_only():
    importance = random_importance(GQA, 0).head
    full = np.ones((GQA.num_layers, GQA.num_heads), bool)
    path = grouped.removal_path(full, importance, GQA)
    mask = full.copy()
    for removal in path:
        assert mask[removal.layer, removal.heads].all()  # only kept heads go
        mask[removal.layer, removal.heads] = False
        GQA.check(SubNetwork(mask, np.ones((3, 12), bool)))
    assert not mask.any()
    # Each layer goes from 4 heads per group through every count down to none: G - 1 in-group steps
    # (one head of each of the 2 groups) and then the 2 groups one by one.
    assert len(path) == GQA.num_layers * (GQA.group_size - 1 + GQA.kv_heads)


def test_removals_take_the_least_importance_per_cost_and_a_group_frees_its_key_value_head():
    # Group 0's heads are all weak; group 1 has one weak head.
    scores = np.array([0.1, 0.1, 0.1, 0.1, 5.0, 5.0, 5.0, 0.05])
    kept = np.ones(8, bool)
    removals = grouped.layer_removals(kept, scores, GQA)
    assert [r.heads.tolist() for r in removals] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 7]]
    assert [r.lost for r in removals] == pytest.approx([0.4, 15.05, 0.15])
    # By importance per head removed: one head of each group (0.075) before group 0 (0.1)...
    assert grouped.cheapest_removal(kept, scores, GQA).heads.tolist() == [0, 7]
    # ... but a whole group also saves its key/value head, which can make it the cheaper cut.
    assert grouped.cheapest_removal(kept, scores, GQA, head_cost=1.0, kv_cost=4.0).heads.tolist() == [0, 1, 2, 3]
    # A layer of one head per group can only lose whole groups.
    single = np.array([True, False, False, False, False, True, False, False])
    assert [r.heads.tolist() for r in grouped.layer_removals(single, scores, GQA)] == [[0], [5]]


def test_head_pruning_steps_stay_valid_and_remove_at_least_their_share():
    importance = random_importance(GQA, 1).head
    subnet = SubNetwork.full(GQA)
    for _ in range(6):
        before = int(subnet.head_mask.sum())
        if before == 0:
            break
        subnet = head_pruning.prune_least_important(subnet, importance, 3, GQA)
        GQA.check(subnet)
        assert before - 3 >= int(subnet.head_mask.sum()) >= before - 3 - GQA.kv_heads * GQA.num_layers
    # Without GQA the ranking is the encoders': exactly the count, the least important heads.
    plain = ModelShape(num_layers=3, num_heads=8, head_dim=4, hidden_size=32, intermediate_size=12)
    pruned = head_pruning.prune_least_important(SubNetwork.full(plain), importance, 5, plain)
    assert pruned == head_pruning.prune_least_important(SubNetwork.full(plain), importance, 5)
    assert int(pruned.head_mask.sum()) == 19


@pytest.mark.parametrize("allocation", importance_pruning.ALLOCATIONS)
def test_importance_allocation_keeps_valid_nested_head_masks(allocation):
    importance = random_importance(GQA, 2)
    previous = None
    for share in np.linspace(0, 1, 17):
        subnet = importance_pruning.allocate(importance, share, allocation, GQA)
        GQA.check(subnet)
        heads = subnet.head_mask.sum(axis=1) if allocation == "uniform" else subnet.head_mask.sum()
        assert np.all(heads <= np.floor(share * (GQA.num_heads if allocation == "uniform" else GQA.num_heads * 3) + 1e-9))
        if previous is not None:
            assert np.all(previous.head_mask <= subnet.head_mask)  # a larger share keeps a superset
        previous = subnet
    assert previous.is_full()


# --- retraining-free pruning's costs and steps --------------------------------------------------
@pytest.fixture(scope="module")
def llama_costs():
    model = tiny_llama(num_hidden_layers=3, intermediate_size=12)
    return {kind: rfp.CostModel(model, kind, seq_len=10) for kind in rfp.CONSTRAINTS}


def valid_subnets(shape: ModelShape, seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        groups = rng.integers(0, shape.kv_heads + 1, shape.num_layers)
        per_group = rng.integers(1, shape.group_size + 1, shape.num_layers)
        head_mask = np.zeros((shape.num_layers, shape.num_heads), bool)
        for layer in range(shape.num_layers):
            for group in rng.choice(shape.kv_heads, groups[layer], replace=False):
                heads = rng.choice(shape.group_size, per_group[layer], replace=False)
                head_mask[layer, group * shape.group_size + heads] = True
        yield SubNetwork(head_mask, rng.random((shape.num_layers, shape.intermediate_size)) < 0.5)


@pytest.mark.parametrize("kind", rfp.CONSTRAINTS)
def test_rfp_costs_count_query_heads_and_the_key_value_heads_of_kept_groups(llama_costs, kind):
    costs = llama_costs[kind]
    shape = costs.shape
    assert shape.grouped and (costs.kv_cost > 0).all() and (costs.head_cost > 0).all()
    for subnet in valid_subnets(shape, 3, 20):
        linear = costs.base + float(
            (subnet.heads_per_layer * costs.head_cost).sum()
            + (shape.kv_mask(subnet.head_mask).sum(axis=1) * costs.kv_cost).sum()
            + (subnet.units_per_layer * costs.unit_cost).sum()
        )
        if kind == "macs":  # MACs are exactly linear
            assert costs.cost(subnet) == pytest.approx(linear, rel=1e-12)
        else:  # parameters add each block's norm while it keeps anything
            assert 0 <= costs.cost(subnet) - linear <= 2 * shape.hidden_size * shape.num_layers


def test_rfp_cost_model_of_an_encoder_is_unchanged():
    from conftest import tiny_model

    costs = rfp.CostModel(tiny_model("bert", "classification"), "macs", seq_len=16)
    shape = costs.shape
    one_head = SubNetwork.from_counts(shape, [1, 0, 0], [0, 0, 0])
    assert (costs.head_cost == count_macs(one_head, shape, 16)).all() and not costs.kv_cost.any()


@pytest.mark.parametrize("kind", rfp.CONSTRAINTS)
def test_rfp_mask_search_on_gqa_is_valid_and_fits_the_exact_budget(llama_costs, kind):
    costs = llama_costs[kind]
    importance = random_importance(costs.shape, 4)
    searched = []
    for budget in (0.95, 0.8, 0.6, 0.45):
        if budget < costs.minimum_relative:
            continue
        subnet = rfp.search_masks(importance, costs, budget)
        costs.shape.check(subnet)
        assert costs.relative(subnet) <= budget + 1e-12
        searched.append(subnet)
    assert len(searched) >= 3
    kept = [int(s.head_mask.sum()) + int(s.unit_mask.sum()) for s in searched]
    assert kept == sorted(kept, reverse=True) and kept[-1] < kept[0]
    # The repair keeps GQA valid too: from the full model down to a tight budget.
    repaired = rfp.repair_to_budget(SubNetwork.full(costs.shape), importance, costs, 0.5)
    costs.shape.check(repaired)
    assert costs.relative(repaired) <= 0.5 + 1e-12


def test_rfp_rearrangement_on_gqa_swaps_heads_within_their_group():
    rng = np.random.default_rng(5)
    gradients = MaskGradients(rng.normal(size=(40, 3, 8)), rng.normal(size=(40, 3, 12)))
    start = SubNetwork.from_group_counts(GQA, [2, 1, 2], [2, 3, 1], [6, 6, 6])
    rearranged = rfp.rearrange_masks(start, gradients, shape=GQA)
    GQA.check(rearranged)
    assert (GQA.group_head_counts(rearranged.head_mask) == GQA.group_head_counts(start.head_mask)).all()
    assert rearranged.head_mask.tolist() != start.head_mask.tolist()  # it did swap something
    assert rfp.pruned_fisher_loss(rearranged, gradients) <= rfp.pruned_fisher_loss(start, gradients)
    # Left free, the same swaps would break the rule: the constraint is what keeps it valid.
    free = rfp.rearrange_masks(start, gradients)
    with pytest.raises(NaspruneError, match="key/value groups"):
        GQA.check(free)


# --- nasprune baseline from the command line --------------------------------------------------
def run_cli(*args) -> int:
    from nasprune.cli import main

    return main(["--quiet", *map(str, args)])


def write_llama(path, task: str, **overrides) -> None:
    tiny_llama(task, **overrides).save_pretrained(path)
    make_tokenizer().save_pretrained(path)


def write_gpt2(path) -> None:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=4, n_positions=64, eos_token_id=1,
                        bos_token_id=1, pad_token_id=None)
    GPT2ForSequenceClassification(config).save_pretrained(path)
    make_tokenizer().save_pretrained(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Trained one epoch with ``train-supernet``: a GQA Llama classifier and LM, a GPT-2 classifier."""
    root = tmp_path_factory.mktemp("decoder-baselines")
    for split, n, seed in (("train", 48, 0), ("valid", 16, 1), ("test", 16, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    write_text(root / "train.txt", 120, 0)
    write_jsonl(root / "valid.jsonl", 30, 1)
    write_text(root / "test.txt", 30, 2)
    write_llama(root / "llama-cls", "classification")
    write_llama(root / "llama-lm", "causal_lm")
    write_gpt2(root / "gpt2-cls")
    # The reference model: a smaller Llama without a pad id (its tokenizer has none either).
    write_llama(root / "small-llama-cls", "classification", num_hidden_layers=1, num_attention_heads=4)
    classification = ("--train-file", root / "train.csv", "--validation-file", root / "valid.csv",
                      "--test-file", root / "test.csv", "--max-seq-length", 12)
    lm = ("--task", "lm", "--train-file", root / "train.txt", "--validation-file", root / "valid.jsonl",
          "--test-file", root / "test.txt", "--block-size", 12)
    made = {}
    for name, flags in (("llama-cls", classification), ("llama-lm", lm), ("gpt2-cls", classification)):
        assert run_cli("train-supernet", "--model", root / name, *flags, "--epochs", 1, "--batch-size", 8,
                       "--learning-rate", 1e-3, "--no-rewire", "--output-dir", root / f"{name}-supernet") == 0
        made[name] = root / f"{name}-supernet"
    return root, made


@pytest.fixture
def trained(checkpoints, monkeypatch):
    """:func:`checkpoints`, from their data's folder (a checkpoint's data files are followed from the
    working directory, never from elsewhere)."""
    monkeypatch.chdir(checkpoints[0])
    return checkpoints


def check_baseline(out, method: str, shape: ModelShape) -> pd.DataFrame:
    """Rows written, each sub-network valid for ``shape``, the summary and plot there."""
    table = pd.read_csv(out / "results.csv")
    assert len(table) >= 2 and table["valid_error"].notna().all() and table["test_error"].notna().all()
    for _, row in table.iterrows():
        shape.check(subnet_from_row(row))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["complete"] is True
    assert (out / "pareto.png").stat().st_size > 0 and (out / "pareto.md").is_file()
    return table


def pruned_some_heads_both_ways(table: pd.DataFrame, shape: ModelShape) -> tuple[bool, bool]:
    """Whether any row dropped a whole key/value group, and whether any kept fewer than G heads in a group."""
    whole, within = False, False
    for _, row in table.iterrows():
        counts = shape.group_head_counts(subnet_from_row(row).head_mask)
        whole |= bool(((counts == 0) & (counts.max(axis=1, keepdims=True) > 0)).any())
        within |= bool(((counts > 0) & (counts < shape.group_size)).any())
    return whole, within


def shape_of(checkpoint) -> ModelShape:
    from transformers import AutoConfig

    return ModelShape.from_config(AutoConfig.from_pretrained(checkpoint / "epoch-1"))


COMMON = ("--num-importance-samples", 16, "--batch-size", 8, "--eval-batch-size", 8)


@pytest.mark.parametrize("name", ["llama-cls", "llama-lm"])
def test_rfp_and_head_pruning_on_a_gqa_llama_give_valid_sub_networks(trained, name, tmp_path):
    root, made = trained
    shape = shape_of(made[name])
    assert shape.grouped and shape.group_size == 4
    out = tmp_path / "rfp"
    assert run_cli("baseline", "--method", "rfp", "--checkpoint", made[name], "--output-dir", out, *COMMON,
                   "--budgets", "0.5,0.7,0.9", "--no-mask-tuning", "--objectives", "error,macs") == 0
    table = check_baseline(out, "rfp", shape)
    assert table["budget"].tolist() == [1.0, 0.9, 0.7, 0.5]
    assert (table["relative_macs"] <= table["budget"] + 1e-12).all()
    assert (table["relative_macs"].iloc[1:] < 1).all()

    out = tmp_path / "heads"
    assert run_cli("baseline", "--method", "head-pruning", "--checkpoint", made[name], "--output-dir", out,
                   *COMMON, "--prune-fraction", 0.2) == 0
    table = check_baseline(out, "head_pruning", shape)
    heads = [sum(json.loads(h)) for h in table["heads_per_layer"]]
    assert heads[0] == 16 and all(a - b >= 4 for a, b in zip(heads, heads[1:])) and heads[-1] >= 1
    assert pruned_some_heads_both_ways(table, shape) == (True, True)


@pytest.mark.parametrize("name,allocation", [("llama-cls", "global"), ("llama-lm", "uniform")])
def test_importance_pruning_on_a_gqa_llama_gives_valid_sub_networks(trained, name, allocation, tmp_path):
    root, made = trained
    shape = shape_of(made[name])
    out = tmp_path / "importance"
    assert run_cli("baseline", "--method", "importance", "--checkpoint", made[name], "--output-dir", out, *COMMON,
                   "--budgets", "0.4,0.7", "--allocation", allocation, "--constraint", "params",
                   "--epochs", 1 if name == "llama-cls" else 0, "--learning-rate", 1e-3) == 0
    table = check_baseline(out, "importance_pruning", shape)
    assert table["budget"].tolist() == [1.0, 0.7, 0.4]
    assert (table["relative_params"] <= table["budget"] + 1e-12).all()
    whole, within = pruned_some_heads_both_ways(table, shape)
    assert whole or within


def test_layer_drop_on_a_gqa_llama_fine_tunes_the_bottom_layers(trained, tmp_path):
    root, made = trained
    shape = shape_of(made["llama-lm"])
    out = tmp_path / "layers"
    assert run_cli("baseline", "--method", "layer-drop", "--checkpoint", made["llama-lm"], "--output-dir", out,
                   "--epochs", 1, "--batch-size", 8, "--eval-batch-size", 8, "--learning-rate", 1e-3) == 0
    table = check_baseline(out, "layer_drop", shape)
    assert table["num_layers"].tolist() == [2, 1] and table["dropped_layers"].tolist() == [0, 1]


def test_rfp_with_mask_tuning_on_a_decoder_is_refused_before_any_work(trained, tmp_path, capsys):
    root, made = trained
    assert run_cli("baseline", "--method", "rfp", "--checkpoint", made["llama-cls"], "--output-dir",
                   tmp_path / "rfp", *COMMON) == 2
    assert "--no-mask-tuning" in capsys.readouterr().err
    assert not (tmp_path / "rfp" / "results.csv").exists()


def test_baselines_on_gpt2_without_gqa(trained, tmp_path):
    root, made = trained
    shape = shape_of(made["gpt2-cls"])
    assert not shape.grouped and shape.causal
    for method, flags in (("rfp", ("--budgets", "0.5,0.8", "--no-mask-tuning")),
                          ("head-pruning", ("--prune-fraction", 0.25)),
                          ("importance", ("--budgets", "0.5", "--epochs", 0))):
        out = tmp_path / method
        assert run_cli("baseline", "--method", method, "--checkpoint", made["gpt2-cls"], "--output-dir", out,
                       *COMMON, *flags) == 0
        table = check_baseline(out, BASELINE_METHODS[method], shape)
        if method == "head-pruning":  # single heads, exactly a quarter of the 8 per step as for encoders
            assert [sum(json.loads(h)) for h in table["heads_per_layer"]] == [8, 6, 4, 2]


def test_the_reference_model_baseline_pads_a_decoder_without_a_pad_id(trained, tmp_path):
    root, made = trained
    out = tmp_path / "reference"
    # Batches of 8 need padding: HF's decoder classifiers refuse them without a pad id.
    assert run_cli("baseline", "--method", "model", "--checkpoint", made["llama-cls"], "--output-dir", out,
                   "--reference-model", root / "small-llama-cls", "--epochs", 1, "--batch-size", 8,
                   "--eval-batch-size", 8, "--learning-rate", 1e-3) == 0
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 1 and 0 <= table.loc[0, "valid_error"] <= 1
    reference = tiny_llama(num_hidden_layers=1, num_attention_heads=4)
    full = ParameterCounter(tiny_llama()).total
    assert table.loc[0, "params"] == sum(p.numel() for p in reference.parameters())
    assert table.loc[0, "relative_params"] == pytest.approx(table.loc[0, "params"] / full)
    # Its MACs are a causal GQA decoder's: 1 of 2 layers, 4 query heads on 2 key/value heads.
    small = ModelShape.from_config(reference.config)
    assert small.causal and small.num_kv_heads == 2
    big = ModelShape.from_config(tiny_llama().config)
    assert table.loc[0, "macs"] == count_macs(SubNetwork.full(small), small, 12)
    assert table.loc[0, "relative_macs"] == pytest.approx(table.loc[0, "macs"] / count_macs(SubNetwork.full(big), big, 12))


def test_lm_plots_name_what_the_empty_model_predicts():
    from nasprune.plots import empty_model_label

    assert "majority class" in empty_model_label({"metric": "accuracy"})
    assert "majority" not in empty_model_label({"metric": "lm_score", "vocab_size": 24})
    assert "embedding" in empty_model_label({"vocab_size": 24})
