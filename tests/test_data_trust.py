"""Data the results can be trusted on: split seeds apart from training seeds, data files named by a
checkpoint's metadata, data that cannot be trained on, and sub-networks that cross processes."""

from __future__ import annotations

import copy
import importlib.util
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import random_subnet, write_sentiment_csv, write_tiny_bert
from nasprune import data as nd
from nasprune.cli import build_parser
from nasprune.cli.flags import data_overrides_from_args
from nasprune.data import DataOptions, checkpoint_data_options, load_checkpoint_data
from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork

REPO = Path(__file__).resolve().parents[1]
SECRET = "TOPSECRET"


# --- seeds: --data-seed draws the split, --seed does not ----------------------------------------
def _validation_texts(args: list[str]) -> list[str]:
    options = DataOptions.from_args(build_parser().parse_args(args))
    return list(options.load().validation["text"])


def test_training_seed_leaves_the_split_alone_and_data_seed_changes_it(tmp_path):
    write_sentiment_csv(tmp_path / "train.csv", 60, seed=0)
    flags = ["train-supernet", "--output-dir", "x", "--train-file", str(tmp_path / "train.csv")]
    first = _validation_texts([*flags, "--seed", "1"])
    assert _validation_texts([*flags, "--seed", "2"]) == first
    assert _validation_texts([*flags, "--seed", "2", "--data-seed", "0"]) == first
    assert _validation_texts([*flags, "--seed", "1", "--data-seed", "7"]) != first


@pytest.mark.parametrize("command", [
    ["run"], ["finetune", "--output-dir", "x"], ["train-supernet", "--output-dir", "x"],
])
def test_training_commands_take_data_seed_beside_seed(command):
    args = build_parser().parse_args([*command, "--seed", "4"])
    assert args.data_seed == 0 and DataOptions.from_args(args).seed == 0
    args = build_parser().parse_args([*command, "--seed", "4", "--data-seed", "3"])
    assert DataOptions.from_args(args).seed == 3


@pytest.mark.parametrize("command", [
    ["search", "--checkpoint", "c", "--output-dir", "o"],
    ["baseline", "--method", "rfp", "--checkpoint", "c", "--output-dir", "o"],
])
def test_checkpoint_commands_override_the_data_seed_only_when_given(command, tmp_path):
    parser = build_parser()
    assert data_overrides_from_args(parser.parse_args([*command, "--seed", "5"])) == {}
    given = data_overrides_from_args(parser.parse_args([*command, "--data-seed", "2", "--max-eval-samples", "9"]))
    assert given == {"seed": 2, "max_eval_samples": 9}
    recorded = DataOptions(task="rte", seed=1).record(tmp_path)
    assert checkpoint_data_options(tmp_path, recorded, {})[0].seed == 1
    assert checkpoint_data_options(tmp_path, recorded, given)[0].seed == 2


def test_negative_data_seed_is_refused():
    with pytest.raises(NaspruneError, match="--data-seed"):
        DataOptions(task="rte", seed=-1).validate()


def _grid_module():
    spec = importlib.util.spec_from_file_location("nasprune_grid_for_data_seeds", REPO / "experiments" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_grid_seeds_share_one_split_unless_data_seeds_are_listed(tmp_path, monkeypatch):
    grid = _grid_module()
    config = {**grid.DEFAULTS, "output_dir": str(tmp_path), "seeds": [1, 2]}
    seen = []

    def fake_train(model, data_options, training, space, folder, **kwargs):
        seen.append((data_options.seed, training.seed))

    import nasprune.workflows

    monkeypatch.setattr(nasprune.workflows, "train_supernet", fake_train)
    for job in grid.build_jobs(config):
        if job.kind == "train":
            job.run()
    assert seen == [(0, 1), (0, 2)]

    config["data_seeds"] = [0, 5]
    names = [job.name for job in grid.build_jobs(config)]
    assert names[0] == "rotten_tomatoes/data-seed-0/seed-1/supernet-small-full"
    assert len(names) == len(set(names)) == 8  # per data seed and seed: a super-network and a search
    seen.clear()
    for job in grid.build_jobs(config):
        if job.kind == "train":
            job.run()
    assert seen == [(0, 1), (0, 2), (5, 1), (5, 2)]

    # Older configs wrote the split seed into the data section.
    (tmp_path / "old.json").write_text(json.dumps({"data": {"seed": 3, "max_seq_length": 32}}))
    old = grid.load_config(tmp_path / "old.json")
    assert old["data_seeds"] == [3] and old["data"] == {"max_seq_length": 32}


# --- SubNetwork crosses process boundaries -------------------------------------------------------
SHAPE = ModelShape(num_layers=3, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=16)


def test_subnetwork_pickles_copies_and_stays_immutable():
    for subnet in (random_subnet(SHAPE, seed=1), random_subnet(SHAPE, seed=2, prefix=True), SubNetwork.full(SHAPE)):
        restored = pickle.loads(pickle.dumps(subnet))
        assert restored == subnet and hash(restored) == hash(subnet) and restored.to_dict() == subnet.to_dict()
        assert not restored.head_mask.flags.writeable and not restored.unit_mask.flags.writeable
        for copied in (copy.copy(subnet), copy.deepcopy(subnet), copy.deepcopy([subnet])[0]):
            assert copied == subnet and hash(copied) == hash(subnet)
        with pytest.raises(AttributeError, match="immutable"):
            restored.head_mask = subnet.unit_mask
        with pytest.raises(ValueError):
            restored.head_mask[0, 0] = not restored.head_mask[0, 0]


def test_subnetwork_travels_through_a_process_pool():
    subnets = [random_subnet(SHAPE, seed=seed) for seed in range(6)]
    with multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn").Pool(2) as pool:
        # Each sub-network is pickled to a worker, copied there and pickled back.
        returned = pool.map(copy.copy, subnets)
        described = pool.map(SubNetwork.to_dict, subnets)
    assert returned == subnets and [hash(s) for s in returned] == [hash(s) for s in subnets]
    assert described == [s.to_dict() for s in subnets]


# --- data files named by a checkpoint's metadata -------------------------------------------------
def _secret_csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET}_header,label\n{SECRET} row one,0\n{SECRET} row two,1\n")
    return path


def _checkpoint(folder: Path, **data_options) -> Path:
    """A checkpoint folder whose nasprune.json records ``data_options`` as given (crafted)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nasprune.json").write_text(json.dumps({"data_options": data_options}))
    return folder


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The working directory: a folder that holds neither the checkpoint nor the secret."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("how", ["absolute", "relative", "relative_record", "symlink"])
def test_a_checkpoint_cannot_point_at_a_file_outside_the_places_the_user_named(tmp_path, elsewhere, how):
    secret = _secret_csv(tmp_path / "private" / "secret.csv")
    folder = tmp_path / "downloaded" / "epoch-1"
    if how == "absolute":
        recorded = {"train_file": str(secret)}
    elif how == "relative":
        recorded = {"train_file": "../../private/secret.csv"}
    elif how == "relative_record":
        recorded = {"train_file": "gone.csv", "files_relative_to_checkpoint": {"train_file": "../../private/secret.csv"}}
    else:
        folder.mkdir(parents=True)
        (folder / "train.csv").symlink_to(secret)
        recorded = {"train_file": "train.csv"}
    _checkpoint(folder, **recorded)
    with pytest.raises(NaspruneError) as info:
        load_checkpoint_data(folder, recorded)
    message = str(info.value)
    assert "--train-file/--validation-file/--test-file" in message and "nasprune.json" in message
    assert SECRET not in message and "row" not in message


def test_files_the_user_names_are_used_and_open_their_folder(tmp_path, elsewhere):
    data = tmp_path / "data"
    data.mkdir()
    write_sentiment_csv(data / "train.csv", 40, seed=0)
    write_sentiment_csv(data / "valid.csv", 12, seed=1)
    recorded = {"train_file": str(data / "train.csv"), "validation_file": str(data / "valid.csv")}
    folder = _checkpoint(tmp_path / "ckpt" / "epoch-1", **recorded)
    with pytest.raises(NaspruneError, match="outside"):
        checkpoint_data_options(folder, recorded)
    # The user names the training file: its folder is theirs, so the recorded validation file is used.
    options, private = checkpoint_data_options(folder, recorded, {"train_file": str(data / "train.csv")})
    assert options.validation_file == str((data / "valid.csv").resolve())
    assert private == ((data / "valid.csv").resolve(),)


def test_recorded_files_follow_a_moved_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    write_sentiment_csv(project / "data" / "train.csv", 40, seed=0)
    monkeypatch.chdir(project)
    recorded = DataOptions(train_file="data/train.csv", max_seq_length=16).record(project / "out" / "epoch-1")
    assert recorded["train_file"] == str(project / "data" / "train.csv")
    assert recorded["files_relative_to_checkpoint"] == {"train_file": "../../data/train.csv"}
    _checkpoint(project / "out" / "epoch-1", **recorded)

    moved = tmp_path / "moved"
    project.rename(moved)
    monkeypatch.chdir(moved)  # the old absolute path is gone; the relative one finds the file
    options, task = load_checkpoint_data(moved / "out" / "epoch-1", recorded)
    assert options.train_file == str((moved / "data" / "train.csv").resolve())
    assert len(task.train) + len(task.validation) + len(task.test) == 40


def test_data_inside_the_checkpoint_tree_is_followed(tmp_path, elsewhere):
    run = tmp_path / "run"
    run.mkdir()
    write_sentiment_csv(run / "data.csv", 30, seed=0)  # the run's own copy of its data
    recorded = {"train_file": "../data.csv"}
    (run / "epoch-2").mkdir()
    _checkpoint(run / "epoch-2", **recorded)
    options, _ = load_checkpoint_data(run / "epoch-2", recorded)
    assert options.train_file == str((run / "data.csv").resolve())
    with pytest.raises(NaspruneError, match="not found"):
        checkpoint_data_options(run / "epoch-2", {"train_file": "missing.csv"})
    with pytest.raises(NaspruneError, match="unknown data option"):
        checkpoint_data_options(run / "epoch-2", {"train_file": "../data.csv", "shell": "rm -rf /"})


def test_errors_never_quote_a_file_the_checkpoint_named(tmp_path, elsewhere):
    run = tmp_path / "run"
    secret = _secret_csv(run / "secret.csv")
    _checkpoint(run / "epoch-1", train_file="../secret.csv")
    # Allowed place, wrong columns: the file and the missing column are named, not its header.
    with pytest.raises(NaspruneError) as info:
        load_checkpoint_data(run / "epoch-1", {"train_file": "../secret.csv"})
    assert "secret.csv" in str(info.value) and "missing column" in str(info.value)
    assert SECRET not in str(info.value)
    # Regression labels that are not numbers: no value is quoted either.
    secret.write_text(f"text,label\nfine,0.5\nfine,{SECRET}\nfine,0.25\n")
    with pytest.raises(NaspruneError) as info:
        nd.load_task_data(None, train_file=secret, label_kind="regression", private_files=[secret])
    assert "numbers" in str(info.value) and SECRET not in str(info.value)
    # Files the user named keep their helpful details.
    _secret_csv(secret)
    with pytest.raises(NaspruneError, match=f"{SECRET}_header"):
        nd.load_task_data(None, train_file=secret)


def test_search_refuses_a_crafted_checkpoint_on_the_command_line(tmp_path):
    secret = _secret_csv(tmp_path / "private" / "secret.csv")
    checkpoint = tmp_path / "ckpt"
    write_tiny_bert(checkpoint)
    info = {
        "base_model": "x", "model_type": "bert", "task": "custom", "task_kind": "classification",
        "num_labels": 2, "max_seq_length": 16, "search_space": "small", "strategy": "standard", "epoch": 1,
        "data_options": {"train_file": str(secret), "max_seq_length": 16},
    }
    (checkpoint / "nasprune.json").write_text(json.dumps(info))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "nasprune.cli", "--quiet", "search", "--checkpoint", str(checkpoint),
         "--output-dir", str(work / "out"), "--num-samples", "2"],
        capture_output=True, text=True, cwd=work, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "NASPRUNE_CACHE": str(work)},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--train-file/--validation-file/--test-file" in result.stderr
    assert SECRET not in result.stderr + result.stdout


# --- data that cannot be trained on ---------------------------------------------------------------
def _csv(path: Path, frame: dict) -> Path:
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


def test_a_single_class_is_refused_naming_the_file_and_column(tmp_path):
    path = _csv(tmp_path / "one.csv", {"text": [f"words {i}" for i in range(20)], "stars": ["good"] * 20})
    with pytest.raises(NaspruneError) as info:
        nd.load_task_data(None, train_file=path, label_column="stars")
    message = str(info.value)
    assert "one.csv" in message and "'stars'" in message and "single class" in message and "'good'" in message
    # Two classes in the file, but the cap leaves one in the training split.
    path = _csv(tmp_path / "two.csv", {"text": [f"w {i}" for i in range(40)], "label": [0] * 39 + [1]})
    with pytest.raises(NaspruneError, match="max-train-samples"):
        nd.load_task_data(None, train_file=path, max_train_samples=3)
    # Regression: a constant target.
    path = _csv(tmp_path / "flat.csv", {"text": [f"w {i}" for i in range(20)], "label": [0.5] * 20})
    with pytest.raises(NaspruneError, match="same value"):
        nd.load_task_data(None, train_file=path)


@pytest.mark.parametrize("texts", [[""] * 20, ["   "] * 20, [None] * 20])
def test_a_text_column_empty_in_every_row_is_refused(tmp_path, texts):
    path = _csv(tmp_path / "blank.csv", {"review": texts, "label": [0, 1] * 10})
    with pytest.raises(NaspruneError) as info:
        nd.load_task_data(None, train_file=path, text_column="review")
    assert "blank.csv" in str(info.value) and "'review'" in str(info.value) and "empty in every row" in str(info.value)
    good = _csv(tmp_path / "good.csv", {"a": [f"w {i}" for i in range(20)], "b": texts, "label": [0, 1] * 10})
    with pytest.raises(NaspruneError, match="'b' is empty"):
        nd.load_task_data(None, train_file=good, text_column="a", text_pair_column="b")


def test_a_single_class_ends_the_command_with_one_message(tmp_path):
    write_tiny_bert(tmp_path / "model")
    _csv(tmp_path / "one.csv", {"text": ["good fun"] * 20, "label": [1] * 20})
    result = subprocess.run(
        [sys.executable, "-m", "nasprune.cli", "--quiet", "finetune", "--model", str(tmp_path / "model"),
         "--train-file", str(tmp_path / "one.csv"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "NASPRUNE_CACHE": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "single class" in result.stderr and "one.csv" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("epoch-*"))


# --- other bad input -------------------------------------------------------------------------------
def test_labels_that_mix_kinds_are_refused(tmp_path):
    rows = [{"text": f"w {i}", "label": i % 2} for i in range(10)]
    rows[3]["label"] = "pos"
    (tmp_path / "mixed.json").write_text(json.dumps(rows))
    with pytest.raises(NaspruneError, match="mixes numbers and strings"):
        nd.load_task_data(None, train_file=tmp_path / "mixed.json")
    _csv(tmp_path / "ints.csv", {"text": [f"w {i}" for i in range(20)], "label": [0, 1] * 10})
    _csv(tmp_path / "words.csv", {"text": [f"w {i}" for i in range(6)], "label": ["neg", "pos"] * 3})
    with pytest.raises(NaspruneError, match="numbers in .*ints.csv but strings in .*words.csv"):
        nd.load_task_data(None, train_file=tmp_path / "ints.csv", validation_file=tmp_path / "words.csv")
    rows = [{"text": f"w {i}", "label": [i % 2]} for i in range(10)]
    (tmp_path / "lists.json").write_text(json.dumps(rows))
    with pytest.raises(NaspruneError, match="neither numbers nor strings"):
        nd.load_task_data(None, train_file=tmp_path / "lists.json")


def test_other_unusable_files_get_one_message(tmp_path):
    texts = [f"w {i}" for i in range(20)]
    with pytest.raises(NaspruneError, match="more than one role"):
        nd.load_task_data(None, train_file=_csv(tmp_path / "a.csv", {"text": texts, "label": [0, 1] * 10}),
                          text_column="label")
    with pytest.raises(NaspruneError, match="at most 1000"):
        nd.load_task_data(None, train_file=_csv(tmp_path / "ids.csv", {"text": texts, "label": range(5000, 5020)}))
    with pytest.raises(NaspruneError, match="more than 1000 classes"):
        many = [f"text {i}" for i in range(1200)]
        nd.load_task_data(None, train_file=_csv(tmp_path / "swapped.csv", {"text": many, "label": many}))
    with pytest.raises(NaspruneError, match="finite"):
        nd.load_task_data(None, train_file=_csv(tmp_path / "inf.csv", {"text": texts, "label": [0.5, np.inf] * 10}))
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(NaspruneError, match="is a folder"):
        nd.load_task_data(None, train_file=tmp_path / "folder.csv")
    swag = {"sent1": texts, "sent2": texts, **{f"ending{i}": texts for i in range(4)}, "label": [0, 7] * 10}
    with pytest.raises(NaspruneError, match=r"index of the right choice, 0\.\.3; found 7"):
        nd.load_task_data("swag", train_file=_csv(tmp_path / "swag.csv", swag))


def test_malformed_data_options_in_a_checkpoint_get_one_message(tmp_path, elsewhere):
    for recorded, needle in (
        (["train.csv"], "not a mapping"),
        ({"files_relative_to_checkpoint": "x"}, "not a mapping"),
        ({"train_file": 7}, "not a path"),
        ({"task": "rte", "max_seq_length": "long"}, "--max-seq-length must be an integer"),
        ({"task": "rte", "seed": 1.5}, "--data-seed must be an integer"),
    ):
        with pytest.raises(NaspruneError, match=needle):
            load_checkpoint_data(tmp_path, recorded)
