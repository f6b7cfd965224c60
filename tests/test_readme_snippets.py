"""Every ```python block of README.md runs, so that none can rot.

How it works (read this before adding a snippet to the README):

* Each ```python block of README.md is one test, named after its line in the README. It is run with
  ``exec`` in a fresh namespace, in an empty temporary working directory.
* A snippet that needs something a reader would have (a model folder, a training script, a model
  object) names a fixture in an HTML comment on the line right before its fence, e.g.
  ``<!-- readme-test: exported_model -->``. GitHub does not render the comment. The fixture, a function
  in :data:`FIXTURES` below, prepares the working directory and the namespace, and may shrink the
  user's job to a test's with exact text replacements (each must match the snippet, so a stale one
  fails) and check what the snippet produced.
* Names a snippet uses for the user's own things are made real rather than replaced where possible:
  ``"bert-base-uncased"`` is a tiny random BERT saved in the working directory under that name, which
  ``from_pretrained`` finds before it would ask the hub.
* A snippet without a comment must run as it is. A new snippet that needs setup gets a new fixture here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from conftest import tiny_batch, tiny_model, write_sentiment_csv, write_tiny_bert
from tiny_decoders import write_tiny_decoder

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*([\w-]+)\s*-->")


@dataclass
class Snippet:
    line: int  # of the opening fence, 1-based
    code: str
    fixture: str | None


def readme_snippets(text: str) -> list[Snippet]:
    """The ```python blocks of ``text``, with the fixture named on the line before each."""
    lines = text.splitlines()
    snippets = []
    position = 0
    while position < len(lines):
        if lines[position].strip() == "```python":
            start = position
            position += 1
            while lines[position].strip() != "```":
                position += 1
            marker = MARKER.search(lines[start - 1]) if start else None
            code = "\n".join(lines[start + 1:position]) + "\n"
            snippets.append(Snippet(start + 1, code, marker.group(1) if marker else None))
        position += 1
    return snippets


@dataclass
class Prepared:
    """What a fixture gives a snippet: names in its namespace, text replacements, a check afterwards."""

    namespace: dict[str, Any] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] = lambda namespace: None


def exported_model(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """``pruned-model``: a sub-network of a tiny BERT classifier, exported as ``nasprune export`` does."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from nasprune.export import export_subnetwork
    from nasprune.subnet import SubNetwork
    from nasprune.supernet import SuperNetwork

    write_tiny_bert(workdir / "fine-tuned", num_layers=2)
    supernet = SuperNetwork(BertForSequenceClassification.from_pretrained(workdir / "fine-tuned"))
    subnet = SubNetwork.from_counts(supernet.shape, [2, 1], [40, 8])
    export_subnetwork(supernet, subnet, AutoTokenizer.from_pretrained(workdir / "fine-tuned"), "pruned-model")

    def check(namespace: dict[str, Any]) -> None:
        meta = json.loads((workdir / "pruned-model" / "nasprune_export.json").read_text())
        assert meta["heads_per_layer"] == [2, 1]
        assert sum(p.numel() for p in namespace["model"].parameters()) == meta["params"]

    return Prepared(check=check)


def exported_decoder(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """``pruned-model``: a sub-network of a tiny random Llama (grouped-query attention) language model,
    exported as ``nasprune export`` does, layers of different widths (so the nasprune format)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from nasprune.export import export_subnetwork
    from nasprune.subnet import SubNetwork
    from nasprune.supernet import SuperNetwork

    write_tiny_decoder(workdir / "language-model", "llama")
    supernet = SuperNetwork(LlamaForCausalLM.from_pretrained(workdir / "language-model"))
    # Layer 0: one whole key/value group (2 query heads); layer 1: one head in each group.
    subnet = SubNetwork.from_group_counts(supernet.shape, [1, 2], [2, 1], [48, 24])
    export_subnetwork(supernet, subnet, AutoTokenizer.from_pretrained(workdir / "language-model"), "pruned-model")

    def check(namespace: dict[str, Any]) -> None:
        meta = json.loads((workdir / "pruned-model" / "nasprune_export.json").read_text())
        assert meta["heads_per_layer"] == [2, 2]
        assert sum(p.numel() for p in namespace["model"].parameters()) == meta["params"]

    return Prepared(check=check)


def tiny_model_and_task(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """``bert-base-uncased`` (a tiny random BERT of that name in the working directory) and a small
    offline CSV task instead of RTE, which needs the hub."""
    write_tiny_bert(workdir / "bert-base-uncased", num_layers=2, initializer_range=0.02)
    write_sentiment_csv(workdir / "train.csv", 160, seed=0)

    def check(namespace: dict[str, Any]) -> None:
        pareto = namespace["result"].pareto
        assert len(pareto) >= 1 and pareto["test_error"].notna().all()
        assert (Path("out/rte-search") / "results.csv").is_file()

    return Prepared(
        replacements={'DataOptions(task="rte")': 'DataOptions(train_file="train.csv", max_seq_length=16)'},
        check=check,
    )


def hf_model_and_batch(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """``hf_model``, a tiny random BERT classifier, and ``batch``, a padded batch for it."""
    model = tiny_model("bert", "classification")

    def check(namespace: dict[str, Any]) -> None:
        assert namespace["logits"].shape == (3, 3)  # a batch of 3, 3 classes

    return Prepared(namespace={"hf_model": model, "batch": tiny_batch(model)}, check=check)


TRAIN_SCRIPT = '''
from argparse import ArgumentParser
from syne_tune import Reporter

parser = ArgumentParser()
parser.add_argument("--num_layers", type=int)
parser.add_argument("--hidden_size", type=int)
args, _ = parser.parse_known_args()
size = args.num_layers * args.hidden_size / (12 * 768)
Reporter()(valid_error=0.1 + 0.2 * (1 - size) ** 2, latency=size)
'''


def syne_tune_train_script(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """``train.py``, a training script that reports ``valid_error`` and ``latency``; the Tuner stops
    after four trials instead of an hour, polls them more often, and writes into the working directory."""
    (workdir / "train.py").write_text(TRAIN_SCRIPT)
    monkeypatch.setenv("SYNETUNE_FOLDER", str(workdir / "syne-tune"))

    def check(namespace: dict[str, Any]) -> None:
        (results,) = (workdir / "syne-tune").glob("*/results.csv.zip")
        table = pd.read_csv(results)
        assert table["trial_id"].nunique() >= 4
        assert table[["valid_error", "latency"]].notna().all().all()

    return Prepared(
        replacements={
            # Syne Tune stops once *more than* this many trials completed: after the first four.
            "StoppingCriterion(max_wallclock_time=3600)": "StoppingCriterion(max_num_trials_completed=3)",
            "n_workers=4,": "n_workers=4, sleep_time=0.5,",  # polls every 0.5 s instead of 5 s
        },
        check=check,
    )


FIXTURES: dict[str, Callable[[Path, pytest.MonkeyPatch], Prepared]] = {
    "exported_model": exported_model,
    "exported_decoder": exported_decoder,
    "tiny_model_and_task": tiny_model_and_task,
    "hf_model_and_batch": hf_model_and_batch,
    "syne_tune_train_script": syne_tune_train_script,
}

SNIPPETS = readme_snippets(README.read_text())


def test_the_readme_has_snippets_and_each_names_a_known_fixture():
    assert len(SNIPPETS) >= 4
    unknown = {s.fixture for s in SNIPPETS} - set(FIXTURES) - {None}
    assert not unknown, f"README names fixtures this test does not define: {unknown}"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: f"README.md:{s.line}-{s.fixture or 'as-is'}")
def test_readme_snippet_runs(snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prepared = FIXTURES[snippet.fixture](tmp_path, monkeypatch) if snippet.fixture else Prepared()
    code = snippet.code
    for old, new in prepared.replacements.items():
        assert old in code, f"the snippet at README.md:{snippet.line} no longer contains {old!r}"
        code = code.replace(old, new)
    namespace = {"__name__": "__readme__", **prepared.namespace}
    # Padded so that a traceback's line numbers are the README's.
    exec(compile("\n" * snippet.line + code, str(README), "exec"), namespace)
    prepared.check(namespace)
