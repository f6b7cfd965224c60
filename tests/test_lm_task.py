"""The causal LM task (``--task lm``) and decoder sequence classification, on a tiny random Llama
and a word-level tokenizer made here: text files into blocks, the next-token score and losses, the
streamed evaluation, and the command line end to end."""

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import write_sentiment_csv
from tiny_decoders import (
    WORDS, decoder_families, llama_config, make_tokenizer, write_jsonl, write_text, write_tiny_decoder,
)

from nasprune import data
from nasprune.errors import NaspruneError

# --- data ----------------------------------------------------------------------------------------
def test_documents_are_joined_by_eos_and_cut_into_whole_blocks(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat\n\n   \na dog ran on the mat\n")
    (tmp_path / "valid.jsonl").write_text('{"text": "the bird sang"}\n{"text": ""}\n{"text": "a cat"}\n')
    task = data.load_task_data("lm", train_file=tmp_path / "train.txt", validation_file=tmp_path / "valid.jsonl",
                               test_file=tmp_path / "valid.jsonl")
    assert task.kind == "causal_lm" and task.spec.metric == "lm_score"
    # Blank lines and empty records are no documents.
    assert task.train["text"] == ["the cat sat", "a dog ran on the mat"]
    assert task.validation["text"] == ["the bird sang", "a cat"]
    tokenizer = make_tokenizer()
    blocks = data.prepare(task, tokenizer, max_seq_length=4)
    ids = {word: i for i, word in enumerate(WORDS)}
    stream = [ids[w] for w in "the cat sat <eos> a dog ran on the mat <eos>".split()]
    assert blocks["train"]["input_ids"] == [stream[0:4], stream[4:8]]  # 11 tokens: the last 3 are dropped
    assert blocks["train"]["labels"] == blocks["train"]["input_ids"]
    assert blocks["validation"]["input_ids"] == [[ids["the"], ids["bird"], ids["sang"], ids["<eos>"]]]


def test_missing_splits_are_carved_out_and_caps_count_blocks(tmp_path):
    write_text(tmp_path / "train.txt", 200, 0)
    task = data.load_task_data("lm", train_file=tmp_path / "train.txt", max_eval_samples=5, seed=3)
    sizes = {name: len(split) for name, split in task.dataset.items()}
    assert sizes == {"train": 140, "validation": 30, "test": 30}
    encoded = data.prepare(task, make_tokenizer(), max_seq_length=8)
    tokens = {name: sum(len(t.split()) + 1 for t in split["text"]) for name, split in task.dataset.items()}
    assert len(encoded["validation"]) == 5  # the cap: 5 of the validation's blocks
    assert len(encoded["train"]) == tokens["train"] // 8
    assert len(encoded["test"]) == tokens["test"] // 8
    again = data.prepare(data.load_task_data("lm", train_file=tmp_path / "train.txt", max_eval_samples=5, seed=3),
                         make_tokenizer(), max_seq_length=8)
    assert again["validation"]["input_ids"] == encoded["validation"]["input_ids"]  # seeded


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("train.csv", "text\nthe cat\n", "unsupported file type '.csv' for the lm task"),
        ("train.jsonl", '{"body": "the cat"}\n', "no 'text' field"),
        ("train.txt", "\n  \n", "holds no text"),
        ("train.jsonl", '{"text": 3}\n', "not text"),
    ],
)
def test_files_the_lm_task_cannot_read_are_refused(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(NaspruneError, match=message):
        data.load_task_data("lm", train_file=tmp_path / name, validation_file=tmp_path / name)


def test_lm_needs_files_and_enough_tokens_for_a_block(tmp_path):
    with pytest.raises(NaspruneError, match="needs --train-file"):
        data.load_task_data("lm")
    (tmp_path / "t.txt").write_text("the cat sat\n")
    task = data.load_task_data("lm", train_file=tmp_path / "t.txt", validation_file=tmp_path / "t.txt",
                               test_file=tmp_path / "t.txt")
    with pytest.raises(NaspruneError, match="fewer than one block of --block-size 8"):
        data.prepare(task, make_tokenizer(), max_seq_length=8)
    with pytest.raises(NaspruneError, match="--label-column"):
        data.load_task_data("lm", train_file=tmp_path / "t.txt", label_column="label")


def test_decoder_tokenizers_pad_with_eos_on_the_right():
    from types import SimpleNamespace

    tokenizer, config = make_tokenizer(), SimpleNamespace(pad_token_id=None, model_type="llama")
    tokenizer.padding_side = "left"
    data.ensure_padding(tokenizer, config)
    assert tokenizer.pad_token == "<eos>" and config.pad_token_id == 1 and tokenizer.padding_side == "right"
    # A model that names its own pad token keeps it.
    tokenizer, config = make_tokenizer(), SimpleNamespace(pad_token_id=0, model_type="llama")
    data.ensure_padding(tokenizer, config)
    assert tokenizer.pad_token == "<unk>" and config.pad_token_id == 0


# --- score and losses ----------------------------------------------------------------------------
def test_next_token_score_is_one_minus_loss_over_ln_vocab():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=generator)
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[1, 4:] = data.IGNORE_INDEX  # padding: not scored
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    score = data.NextTokenScore()
    assert score(logits.numpy(), labels.numpy()) == pytest.approx(1 - expected.item() / math.log(11), abs=1e-6)
    # Uniform logits are the reference: error 1.
    assert score(torch.zeros(2, 5, 11), labels[:2, :5]) == pytest.approx(0.0, abs=1e-6)
    # Summed batch by batch, the score is the same as over the whole split.
    summed = score.batch_statistics(logits[:2], labels[:2]) + score.batch_statistics(logits[2:], labels[2:])
    assert score.from_statistics(summed) == pytest.approx(score(logits, labels), abs=1e-6)


def test_tables_turn_the_lm_error_back_into_loss_and_perplexity():
    from nasprune.results import lm_loss_and_perplexity, lm_vocab_size, pareto_table

    loss, perplexity = lm_loss_and_perplexity(0.5, 100)
    assert loss == pytest.approx(math.log(100) / 2) and perplexity == pytest.approx(10.0)
    assert lm_vocab_size({"vocab_size": 100}) == 100 and lm_vocab_size({"task": "rte"}) is None
    table = pd.DataFrame({
        "trial_id": [0, 1], "valid_error": [0.5, 0.75], "test_error": [0.5, 0.75], "relative_params": [1.0, 0.2],
        "pareto": [True, True], "num_layers": [2, 0], "subnet": ["{}", "{}"],
    })
    shown = pareto_table(table, {"metric": "lm_score", "vocab_size": 100})
    assert list(shown["valid_perplexity"]) == pytest.approx([100 ** 0.75, 10.0])  # smallest first
    assert "embedding" in shown["note"].iloc[0]  # the empty model still predicts, from the embeddings


def test_lm_losses_match_hf_and_distillation_from_itself_adds_nothing():
    from transformers import LlamaForCausalLM

    from nasprune.training import distillation_loss, label_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config()).eval()
    ids = torch.randint(2, len(WORDS), (2, 9))
    output = model(input_ids=ids, labels=ids)
    assert label_loss(output.logits, ids, regression=False).item() == pytest.approx(output.loss.item(), abs=1e-5)
    same = distillation_loss(output.logits, output.logits.detach(), ids, temperature=2.0, regression=False)
    assert same.item() == pytest.approx(output.loss.item(), abs=1e-5)
    other = distillation_loss(output.logits, torch.zeros_like(output.logits), ids, 2.0, regression=False)
    assert other.item() > output.loss.item() + 1e-3


# --- evaluation ----------------------------------------------------------------------------------
def test_streamed_evaluation_equals_the_loss_of_the_whole_logits(tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    from nasprune import evaluation
    from nasprune.evaluation import SubnetEvaluator, plain_model_error
    from nasprune.subnet import SubNetwork
    from nasprune.supernet import SuperNetwork

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config()).eval()
    write_text(tmp_path / "t.txt", 60, 1)
    task = data.load_task_data("lm", train_file=tmp_path / "t.txt", validation_file=tmp_path / "t.txt",
                               test_file=tmp_path / "t.txt")
    tokenizer = make_tokenizer()
    data.ensure_padding(tokenizer, model.config)
    blocks = data.prepare_split(task, "validation", tokenizer, 16)
    loader = data.make_dataloader(blocks, tokenizer, batch_size=8, shuffle=False, sort_by_length=True)
    ids = torch.tensor(blocks["input_ids"])
    with torch.no_grad():
        hf_loss = F.cross_entropy(model(input_ids=ids).logits[:, :-1].reshape(-1, len(WORDS)), ids[:, 1:].reshape(-1))
    expected = hf_loss.item() / math.log(len(WORDS))

    assert plain_model_error(model, loader, task.metric) == pytest.approx(expected, abs=1e-5)
    supernet = SuperNetwork(model)
    # One sequence's logits at a time through the LM head: the same error.
    monkeypatch.setattr(evaluation, "LOGITS_PER_CHUNK", 16 * len(WORDS))
    full = SubNetwork.full(supernet.shape)
    for cache in (True, False):
        evaluator = SubnetEvaluator(supernet, loader, task.metric, macs_seq_length=16, cache_embeddings=cache)
        assert evaluator.error(full) == pytest.approx(expected, abs=1e-5)
    # A sub-network: the streamed error equals the score of its whole logits.
    half = SubNetwork.from_group_counts(supernet.shape, [2, 1], [1, 2], [24, 48])
    with torch.no_grad(), supernet.select(half):
        logits = supernet(input_ids=ids)
    assert logits.shape == (len(ids), 16, len(WORDS))
    assert evaluator.error(half) == pytest.approx(1 - task.metric(logits, ids), abs=1e-5)


# --- the command line ----------------------------------------------------------------------------
def run_cli(*args):
    from nasprune.cli import main

    return main(["--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def lm_text(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    write_text(root / "train.txt", 240, 0)
    write_jsonl(root / "valid.jsonl", 60, 1)
    write_text(root / "test.txt", 60, 2)
    return root


@pytest.mark.parametrize("family", decoder_families())
def test_lm_task_trains_searches_and_exports_from_the_command_line(lm_text, family, tmp_path, monkeypatch):
    root = tmp_path
    write_tiny_decoder(root / "model", family)
    monkeypatch.chdir(lm_text)  # where a checkpoint's own data files may be read from
    supernet_dir = root / "supernet"
    status = run_cli(
        "train-supernet", "--model", root / "model", "--task", "lm", "--train-file", "train.txt",
        "--validation-file", "valid.jsonl", "--test-file", "test.txt", "--block-size", 16,
        "--epochs", 1, "--batch-size", 8, "--learning-rate", 1e-3, "--output-dir", supernet_dir,
    )
    assert status == 0
    info = json.loads((supernet_dir / "epoch-1" / "nasprune.json").read_text())
    assert info["task"] == "lm" and info["task_kind"] == "causal_lm" and info["max_seq_length"] == 16
    assert info["training"]["temperature"] == 1.0  # the LM task's default distillation temperature
    # Rewired (on by default for the medium space) by the importance of the model's own LM head.
    assert info["rewiring"]["importance"] == "fisher" and info["rewiring"]["source"] == str(root / "model")
    history = info["history"][0]
    # One epoch of training: the largest sub-network predicts the next word better than uniformly.
    assert 0 < history["metrics"]["valid_metric_largest"] < 1

    results = root / "search"
    assert run_cli("search", "--checkpoint", supernet_dir, "--method", "random_search", "--num-samples", 6,
                   "--eval-batch-size", 4, "--output-dir", results) == 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["metric"] == "lm_score" and summary["vocab_size"] == len(WORDS)
    full_error = summary["full_model"]["valid_error"]
    assert 0 < full_error < 1
    assert full_error == pytest.approx(1 - history["metrics"]["valid_metric_largest"], abs=1e-5)
    table = pd.read_csv(results / "results.csv")
    assert len(table) == 6 and table["valid_error"].between(0, 1.5).all()
    pareto = (results / "pareto.md").read_text()
    assert "valid_perplexity" in pareto and "perplexity" in pareto.splitlines()[0]

    exported = root / "pruned"
    assert run_cli("export", "--checkpoint", supernet_dir, "--results", results, "--pick", 0,
                   "--output-dir", exported) == 0
    record = json.loads((exported / "nasprune_export.json").read_text())
    picked = pd.read_csv(results / "results.csv").set_index("trial_id").loc[record["trial_id"]]
    # The exported model, loaded back with from_pretrained, has the searched error.
    assert record["valid_error"] == pytest.approx(picked["valid_error"], abs=1e-4)
    # ... measured on the validation split's blocks (60 documents), which the record and card count.
    from datasets import Dataset
    from transformers import AutoTokenizer

    documents = [json.loads(line)["text"] for line in (lm_text / "valid.jsonl").read_text().splitlines()]
    blocks = len(data.lm.pack_blocks(Dataset.from_dict({"text": documents}), AutoTokenizer.from_pretrained(exported), 16))
    assert record["evaluation"]["validation_examples"] == blocks != len(documents)
    assert f"{blocks} validation and" in (exported / "README.md").read_text()


@pytest.mark.parametrize("family", decoder_families())
def test_a_decoder_classifies_sequences_with_eos_as_its_pad_token(family, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_decoder(tmp_path / "model", family, task="classification")
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(tmp_path / f"{split}.csv", n, seed)
    out = tmp_path / "supernet"
    assert run_cli(
        "train-supernet", "--model", tmp_path / "model", "--train-file", tmp_path / "train.csv",
        "--validation-file", tmp_path / "valid.csv", "--test-file", tmp_path / "test.csv", "--max-seq-length", 12,
        "--epochs", 1, "--batch-size", 8, "--learning-rate", 1e-3, "--no-rewire", "--output-dir", out,
    ) == 0
    checkpoint = out / "epoch-1"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["pad_token_id"] == 1  # <eos>
    tokenizer_config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    assert tokenizer_config["pad_token"] == "<eos>" and tokenizer_config.get("padding_side", "right") == "right"
    results = tmp_path / "search"
    assert run_cli("search", "--checkpoint", out, "--method", "random_search", "--num-samples", 4,
                   "--eval-batch-size", 5, "--output-dir", results) == 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and 0 <= summary["full_model"]["valid_error"] <= 1
    # Cut out and loaded back, the last-token head reads the same (padded) batches to the same error.
    assert run_cli("export", "--checkpoint", out, "--results", results, "--pick", 0, "--eval-batch-size", 5,
                   "--output-dir", tmp_path / "pruned") == 0
    record = json.loads((tmp_path / "pruned" / "nasprune_export.json").read_text())
    picked = pd.read_csv(results / "results.csv").set_index("trial_id").loc[record["trial_id"]]
    assert record["valid_error"] == pytest.approx(picked["valid_error"], abs=1e-6)
    assert json.loads((tmp_path / "pruned" / "config.json").read_text())["pad_token_id"] == 1


def test_a_standard_nas_trial_fine_tunes_a_sub_network_on_the_lm_task(lm_text, tmp_path, monkeypatch, capsys):
    from nasprune.snas import worker

    write_tiny_decoder(tmp_path / "llama", "llama")
    monkeypatch.chdir(lm_text)
    threads = torch.get_num_threads()
    try:
        status = worker.main([
            "--model", str(tmp_path / "llama"), "--task", "lm", "--train_file", "train.txt",
            "--validation_file", "valid.jsonl", "--test_file", "test.txt", "--max_seq_length", "16",
            "--learning_rate", "1e-3", "--batch_size", "8", "--num_threads", "1", "--epochs", "1",
            "--search_space", "small", "--num_layers", "2", "--num_kv_groups", "1", "--heads_per_group", "2",
            "--num_units", "24",
        ])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    # Syne Tune's reporter prints each epoch's result as one line.
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("[tune-metric]"))
    report = json.loads(line.split(":", 1)[1])
    assert 0 < report["valid_error"] < 1 and 0 < report["relative_params"] < 1
