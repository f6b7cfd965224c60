"""Shared fixtures: tiny random BERT/RoBERTa task models and padded batches, built offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

# Tiny models gain nothing from threads, and two threads on a busy 2-core machine thrash.
torch.set_num_threads(1)

from nasprune.subnet import ModelShape, SubNetwork

FAMILIES = ("bert", "roberta")
TASKS = ("classification", "regression", "multiple_choice")

VOCAB = 100
HIDDEN = 32
HEADS = 4
INTERMEDIATE = 64


def tiny_config(family: str, num_layers: int = 3, dropout: float = 0.1, **overrides):
    """A random-init config small enough for unit tests (hidden 32, 4 heads, FFN 64).

    The init scale is 10x HF's default: with std 0.02 the logits of a tiny random model are
    nearly constant, and exactness tests would pass whatever the heads did.
    """
    from transformers import BertConfig, RobertaConfig

    common = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=num_layers,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        type_vocab_size=2,
        initializer_range=0.2,
    )
    common.update(overrides)
    if family == "bert":
        return BertConfig(max_position_embeddings=64, pad_token_id=0, **common)
    if family == "roberta":
        # RoBERTa positions start after the padding index, hence the two extra slots.
        return RobertaConfig(max_position_embeddings=66, pad_token_id=1, **common)
    raise ValueError(family)


def tiny_model(family: str, task: str, num_layers: int = 3, seed: int = 0, **overrides):
    """A tiny HF task model in eval mode; ``task`` is classification, regression or multiple_choice."""
    from transformers import (
        BertForMultipleChoice,
        BertForSequenceClassification,
        RobertaForMultipleChoice,
        RobertaForSequenceClassification,
    )

    classes = {
        ("bert", "multiple_choice"): BertForMultipleChoice,
        ("bert", "seq"): BertForSequenceClassification,
        ("roberta", "multiple_choice"): RobertaForMultipleChoice,
        ("roberta", "seq"): RobertaForSequenceClassification,
    }
    config = tiny_config(family, num_layers=num_layers, **overrides)
    if task == "classification":
        config.num_labels = 3
    elif task == "regression":
        config.num_labels = 1
    torch.manual_seed(seed)
    cls = classes[(family, "multiple_choice" if task == "multiple_choice" else "seq")]
    return cls(config).eval()


def tiny_batch(model, batch: int = 3, seq_len: int = 9, num_choices: int = 2, seed: int = 1) -> dict:
    """A padded batch for ``model``: ``[B, T]`` inputs, or ``[B, C, T]`` for multiple choice."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    multiple_choice = "MultipleChoice" in type(model).__name__
    lead = (batch, num_choices) if multiple_choice else (batch,)
    n = batch * (num_choices if multiple_choice else 1)
    input_ids = torch.randint(3, config.vocab_size, (n, seq_len), generator=generator)
    lengths = torch.randint(2, seq_len + 1, (n,), generator=generator)
    lengths[0] = seq_len  # at least one row without padding, several with
    attention_mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    token_type_ids = (torch.arange(seq_len)[None, :] >= (lengths[:, None] // 2)).long() * attention_mask
    return {
        "input_ids": input_ids.view(*lead, seq_len),
        "attention_mask": attention_mask.view(*lead, seq_len),
        "token_type_ids": token_type_ids.view(*lead, seq_len),
    }


#: The words of the tiny sentiment task: the first four say positive, the next four negative.
SENTIMENT_WORDS = ["good", "great", "fine", "superb", "bad", "awful", "poor", "dull", "movie", "plot", "the", "a"]


def write_tiny_bert(path, num_layers: int = 2, seed: int = 0, **overrides) -> None:
    """Save a tiny random BERT classifier and a word-level tokenizer over :data:`SENTIMENT_WORDS`."""
    from transformers import BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SENTIMENT_WORDS]
    # transformers 5 ignores `vocab_file=` (every word becomes [UNK]); a vocab dict works.
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    torch.manual_seed(seed)
    BertForSequenceClassification(tiny_config("bert", num_layers=num_layers, vocab_size=len(vocab), **overrides)).save_pretrained(path)
    tokenizer.save_pretrained(path)


def write_sentiment_csv(path, n: int, seed: int, text_column: str = "text", label_column: str = "label",
                        labels: tuple = (0, 1)) -> None:
    """``n`` rows of 3-8 words; the label (``labels[1]`` positive) decides which words appear."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        pool = SENTIMENT_WORDS[:4] if label else SENTIMENT_WORDS[4:8]
        text = " ".join(rng.choice(pool + SENTIMENT_WORDS[8:], size=int(rng.integers(3, 9))))
        rows.append({text_column: text, label_column: labels[label]})
    pd.DataFrame(rows).to_csv(path, index=False)


def random_subnet(shape: ModelShape, seed: int, prefix: bool = False, min_keep: int = 0) -> SubNetwork:
    """Random masks; ``prefix`` keeps first-k heads/units, ``min_keep`` the least kept per layer."""
    rng = np.random.default_rng(seed)
    heads = rng.integers(min_keep, shape.num_heads + 1, shape.num_layers)
    units = rng.integers(min_keep, shape.intermediate_size + 1, shape.num_layers)
    if prefix:
        return SubNetwork.from_counts(shape, heads, units)
    head_mask = np.zeros((shape.num_layers, shape.num_heads), bool)
    unit_mask = np.zeros((shape.num_layers, shape.intermediate_size), bool)
    for layer in range(shape.num_layers):
        head_mask[layer, rng.choice(shape.num_heads, heads[layer], replace=False)] = True
        unit_mask[layer, rng.choice(shape.intermediate_size, units[layer], replace=False)] = True
    return SubNetwork(head_mask, unit_mask)


@pytest.fixture(params=[(f, t) for f in FAMILIES for t in TASKS], ids=lambda p: f"{p[0]}-{p[1]}")
def family_task(request) -> tuple[str, str]:
    """Every supported (family, task) combination."""
    return request.param


@pytest.fixture
def model_and_batch(family_task):
    """A tiny model of each (family, task) and a padded batch for it."""
    family, task = family_task
    model = tiny_model(family, task)
    return model, tiny_batch(model)


@pytest.fixture
def bert_model():
    return tiny_model("bert", "classification")


@pytest.fixture
def test_device() -> torch.device:
    """The device of the tests that take one: ``NASPRUNE_TEST_DEVICE`` (``cuda`` on a GPU machine,
    as ``experiments/gpu_check.sh`` sets it), else the CPU. A device the machine lacks is an error,
    not a skip, so a GPU check cannot pass without its GPU."""
    from nasprune.accelerator import resolve_device

    return resolve_device(os.environ.get("NASPRUNE_TEST_DEVICE", "cpu"))


# Exported folders must load in a Python where nasprune cannot be imported at all: a meta path hook
# makes every `import nasprune...` fail, whatever sys.path or the editable install say.
_BLOCK_NASPRUNE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockNasprune(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "nasprune" or name.startswith("nasprune."):
                raise ModuleNotFoundError(f"nasprune is blocked in this test: {name}")

    sys.meta_path.insert(0, BlockNasprune())
    """
)
_ANSWER_JOBS = textwrap.dedent(
    """
    replies = [answer(job) for job in json.loads(sys.stdin.read())]
    assert not any(m.startswith("nasprune") for m in sys.modules), "nasprune was imported"
    print(json.dumps(replies))
    """
)


#: The ``answer`` of classifiers (sequence classification, regression, multiple choice): a job's
#: folder loaded with ``trust_remote_code``, its logits on the job's batch, and the model's module.
CLASSIFIER_ANSWER = """
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

def answer(job):
    auto = AutoModelForMultipleChoice if job["task"] == "multiple_choice" else AutoModelForSequenceClassification
    model = auto.from_pretrained(job["directory"], trust_remote_code=True).eval()
    with torch.inference_mode():
        logits = model(**{k: torch.tensor(v) for k, v in job["batch"].items()}).logits
    return {"module": type(model).__module__, "logits": logits.tolist()}
"""


def load_without_nasprune(answer: str, jobs: list[dict], tmp_path) -> list[dict]:
    """Run ``answer`` (Python source defining ``answer(job) -> dict``, with its own imports) on each
    job in a fresh Python that cannot import nasprune, and return its replies in order.

    One subprocess answers every job, since starting Python with torch and transformers takes
    seconds. Jobs and replies travel as JSON; the subprocess caches remote code under ``tmp_path``
    and never reaches the Hub."""
    script = _BLOCK_NASPRUNE + textwrap.dedent(answer) + _ANSWER_JOBS
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf_modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(jobs), capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
