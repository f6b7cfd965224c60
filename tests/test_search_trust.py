"""Search results that match their weights: fingerprinted journals, refused foreign folders,
complete output sets, one process per output folder (issue 9)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_sentiment_csv, write_tiny_bert
from nasprune import analysis, workflows
from nasprune.checkpoint import load_checkpoint
from nasprune.data import DataOptions, load_checkpoint_data
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.output_dir import LOCK_FILE, check_output_dir, lock_output_dir, lock_path
from nasprune.results import JOURNAL_FILE, SearchResult
from nasprune.search.loop import run_ask_tell
from nasprune.session import load_tokenizer
from nasprune.subnet import SubNetwork
from nasprune.training import TrainingConfig
from nasprune.workflows import SearchOptions, search, train_supernet

REPO = Path(__file__).resolve().parents[1]


def _data(root: Path) -> DataOptions:
    """Tiny sentiment files, inside the training output folder (where a search may follow them)."""
    root = root / "supernet" / "data"
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        if not (root / f"{split}.csv").exists():
            write_sentiment_csv(root / f"{split}.csv", n, seed)
    return DataOptions(
        train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"), test_file=str(root / "test.csv"),
        text_column="text", label_column="label", max_seq_length=16,
    )


def _train(root: Path, seed: int, overwrite: bool = False) -> Path:
    if not (root / "model").exists():
        write_tiny_bert(root / "model", num_layers=2)
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3, seed=seed, strategy="sandwich")
    return train_supernet(str(root / "model"), _data(root), config, "small", root / "supernet",
                          overwrite=overwrite, progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("trained"), seed=0)


def _search(checkpoint: Path, out: Path, **options) -> SearchResult:
    overwrite = options.pop("overwrite", False)
    settings = {"method": "random_search", "objectives": ("error", "params"), "num_samples": 4, "search_space": "small",
                **options}
    return search(checkpoint, SearchOptions(**settings), out, progress=False, overwrite=overwrite)


class _CountValidation:
    """Counts the validation passes of searches (the evaluator with a journal)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = SubnetEvaluator.predict

        def predict(evaluator, subnet):
            if evaluator._journal is not None:
                self.calls += 1
            return original(evaluator, subnet)

        monkeypatch.setattr(SubnetEvaluator, "predict", predict)


# --- 1. the journal is keyed by the weights ----------------------------------------------------
def test_a_search_after_retraining_evaluates_again(tmp_path, monkeypatch, caplog):
    first_checkpoint = _train(tmp_path, seed=0)
    out = tmp_path / "search"
    counter = _CountValidation(monkeypatch)
    first = _search(first_checkpoint, out)
    evaluated = counter.calls
    assert evaluated == first.table["subnet"].nunique() > 0

    counter.calls = 0
    assert _search(first_checkpoint, out).summary["complete"] is True
    assert counter.calls == 0  # the same weights: every error comes from the journal

    # Retrained into the same folder: same path, other weights.
    retrained = _train(tmp_path, seed=1, overwrite=True)
    assert retrained == first_checkpoint
    _, info = load_checkpoint(retrained)
    assert info.fingerprint != first.summary["checkpoint_fingerprint"]
    counter.calls = 0
    with caplog.at_level("WARNING", logger="nasprune"):
        second = _search(retrained, out)
    assert counter.calls == evaluated  # measured again, not resumed from the old journal
    notices = [r.getMessage() for r in caplog.records if "evaluating afresh" in r.getMessage()]
    assert len(notices) == 1 and "checkpoint_fingerprint" in notices[0]
    header = json.loads((out / JOURNAL_FILE).read_text().splitlines()[0])
    assert header["checkpoint_fingerprint"] == info.fingerprint == second.summary["checkpoint_fingerprint"]
    # The errors are the new weights' errors: a fresh evaluator without a journal agrees.
    fresh = SubnetEvaluator(_supernet(retrained), _validation(retrained), _task_data(retrained).metric, 16)
    full = SubNetwork.full(fresh.supernet.shape)
    assert second.summary["full_model"]["valid_error"] == pytest.approx(fresh.error(full))


def _supernet(checkpoint: Path):
    from nasprune.supernet import SuperNetwork, load_hf_model

    _, info = load_checkpoint(checkpoint)
    return SuperNetwork(load_hf_model(str(checkpoint), info.task_kind, info.num_labels))


def _task_data(checkpoint: Path):
    _, info = load_checkpoint(checkpoint)
    return load_checkpoint_data(checkpoint, info.data_options)[1]


def _validation(checkpoint: Path):
    from nasprune import data

    tokenizer = load_tokenizer(str(checkpoint))
    encoded = data.prepare(_task_data(checkpoint), tokenizer, 16)
    return data.make_dataloader(encoded["validation"], tokenizer, 8, shuffle=False, sort_by_length=True)


def test_a_changed_validation_split_is_evaluated_again(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "search"
    counter = _CountValidation(monkeypatch)
    search(checkpoint, SearchOptions(num_samples=3), out, progress=False)
    counter.calls = 0
    result = search(checkpoint, SearchOptions(num_samples=3), out, {"max_eval_samples": 12}, progress=False)
    assert counter.calls == result.table["subnet"].nunique()
    header = json.loads((out / JOURNAL_FILE).read_text().splitlines()[0])
    assert header["validation_examples"] == 12 and header["data_options"]["max_eval_samples"] == 12


# --- 2. another run's folder is refused ---------------------------------------------------------
def test_a_folder_of_another_search_is_refused_with_every_difference(checkpoint, tmp_path):
    out = tmp_path / "search"
    _search(checkpoint, out)
    before = (out / "results.csv").read_bytes()
    with pytest.raises(NaspruneError) as refused:
        _search(checkpoint, out, method="local_search", seed=3, objectives=("error", "macs"))
    message = str(refused.value)
    assert "\n" not in message and str(out) in message and "--overwrite-output-dir" in message
    assert "method: random_search there, local_search now" in message
    assert "seed: 0 there, 3 now" in message
    assert "objectives: ['valid_error', 'relative_params'] there, ['valid_error', 'relative_macs'] now" in message
    assert "search_space" not in message and "checkpoint:" not in message
    assert (out / "results.csv").read_bytes() == before  # nothing of the first run touched
    assert json.loads((out / "summary.json").read_text())["complete"] is True

    # Another checkpoint (a copy elsewhere) is another run too.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    with pytest.raises(NaspruneError, match=f"checkpoint: {checkpoint} there, {copy} now"):
        _search(copy, out)

    replaced = _search(checkpoint, out, method="local_search", seed=3, objectives=("error", "macs"), overwrite=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "local_search" and summary["seed"] == 3 and summary["complete"] is True
    assert len(pd.read_csv(out / "results.csv")) == len(replaced.table)


def test_a_baseline_folder_is_refused_and_its_summary_records_the_definition(checkpoint, tmp_path):
    from nasprune.baselines.runner import BaselineOptions, run_baseline

    out = tmp_path / "baseline"
    result = run_baseline(checkpoint, BaselineOptions(method="layer-drop", epochs=0), out, progress=False)
    _, info = load_checkpoint(checkpoint)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint_fingerprint"] == info.fingerprint is not None
    assert summary["hypervolume_definition"] == analysis.HYPERVOLUME_DEFINITION
    assert summary["reference_point"] == [1.1, 1.1] and summary["complete"] is True
    points = result.table[["valid_error", "relative_params"]].to_numpy()
    assert summary["hypervolume"] == pytest.approx(analysis.hypervolume(points, [1.1, 1.1]))
    with pytest.raises(NaspruneError, match="method: layer_drop there, random_search now"):
        _search(checkpoint, out)


# --- 3. and 4. what the summary records, and one hypervolume ------------------------------------
def test_the_summary_records_fingerprint_definition_and_counts_the_full_model(checkpoint, tmp_path):
    result = _search(checkpoint, tmp_path / "search")
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    _, info = load_checkpoint(checkpoint)
    assert summary["checkpoint_fingerprint"] == info.fingerprint is not None
    assert summary["hypervolume_definition"] == analysis.HYPERVOLUME_DEFINITION
    assert summary["reference_point"] == [1.1, 1.1] and summary["complete"] is True
    assert summary["data_options"]["max_seq_length"] == 16
    table = result.table
    assert summary["hypervolume"] == pytest.approx(analysis.hypervolume(table[["valid_error", "relative_params"]].to_numpy(), [1.1, 1.1]))
    # The initial design's first point is the unpruned model (size exactly 1): it now adds volume.
    full = table.loc[table["relative_params"] == 1.0, "valid_error"].min()
    alone = analysis.hypervolume([[full, 1.0]], [1.1, 1.1])
    assert alone == pytest.approx((1.1 - full) * 0.1) and alone > 0


# --- 5. a reader never sees a partial set as complete -------------------------------------------
def test_an_interrupted_write_leaves_no_complete_summary_beside_stale_files(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "search"
    _search(checkpoint, out)
    (out / "pareto.png").unlink()  # as if the last run had been cut short there

    def broken_plot(*args, **kwargs):
        raise RuntimeError("the plot step failed")

    monkeypatch.setattr(analysis, "plot_front", broken_plot)
    with pytest.raises(RuntimeError, match="plot step"):
        _search(checkpoint, out, num_samples=5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False  # results.csv is already the new one; the summary says so
    assert len(pd.read_csv(out / "results.csv")) == 5 and not (out / "pareto.png").exists()

    monkeypatch.undo()
    result = _search(checkpoint, out, num_samples=5)  # the same search resumes and completes the set
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    assert (out / "pareto.png").stat().st_size > 0 and result.summary["num_evaluated"] == 5


def test_a_rerun_marks_the_old_summary_incomplete_before_it_starts(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "search"
    _search(checkpoint, out)
    seen = {}

    def stop(*args, **kwargs):
        seen["complete"] = json.loads((out / "summary.json").read_text())["complete"]
        raise KeyboardInterrupt

    monkeypatch.setattr(workflows, "run_ask_tell", stop)
    with pytest.raises(KeyboardInterrupt):
        _search(checkpoint, out)
    assert seen["complete"] is False
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert not (out / LOCK_FILE).exists()  # the lock went with the interrupted run


# --- 6. one process per output folder -----------------------------------------------------------
def test_the_lock_is_reentrant_within_a_process_and_cleans_up(tmp_path):
    folder = tmp_path / "new" / "out"
    with lock_output_dir(folder) as locked:
        assert locked == folder and (folder / LOCK_FILE).is_file()
        with lock_output_dir(folder):  # ``run`` holds it, then its search takes it again
            pass
        assert (folder / LOCK_FILE).is_file()
    assert not folder.exists()  # created for a command that wrote nothing: removed again
    with lock_output_dir(folder):
        (folder / "results.csv").write_text("kept")
    assert (folder / "results.csv").read_text() == "kept" and not (folder / LOCK_FILE).exists()
    assert lock_path(folder, inside=False) == folder.parent / f".out{LOCK_FILE}"


def test_an_output_dir_that_is_or_lies_under_a_file_is_refused(tmp_path):
    file = tmp_path / "results.csv"
    file.write_text("x")
    with pytest.raises(NaspruneError, match="is a file"):
        check_output_dir(file)
    with pytest.raises(NaspruneError, match=f"lies under the file {file}"):
        check_output_dir(file / "deeper" / "out")
    with pytest.raises(NaspruneError, match="lies under the file"):
        with lock_output_dir(file / "out"):
            pass
    assert check_output_dir(tmp_path / "fresh" / "out") == tmp_path / "fresh" / "out"


def _cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "nasprune.cli", "--quiet", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_two_processes_on_one_folder_the_second_is_refused(checkpoint, tmp_path):
    out = tmp_path / "search"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from nasprune.output_dir import lock_output_dir
            with lock_output_dir({str(out)!r}):
                Path({str(out / "results.csv")!r}).write_text("the first run's results")
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _cli("search", "--checkpoint", checkpoint, "--output-dir", out, "--num-samples", 2, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "another nasprune process" in lines[0] and str(out) in lines[0]
        assert f"pid {holder.pid}" in lines[0]
        assert (out / "results.csv").read_text() == "the first run's results"  # nothing of the first lost
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and not (out / LOCK_FILE).exists()
    with lock_output_dir(out):  # free again once the first process is done
        pass


def test_cli_refuses_an_output_dir_under_a_file_before_loading_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    result = _cli("search", "--checkpoint", tmp_path / "no-such-checkpoint", "--output-dir", tmp_path / "file" / "out",
                  cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lies under the file" in result.stderr and "no-such-checkpoint" not in result.stderr


# --- 7. and 8. bad numbers and lengths ----------------------------------------------------------
@pytest.mark.parametrize("max_time", [math.nan, math.inf, -1.0, 0.0])
def test_max_time_must_be_a_positive_finite_number(max_time):
    with pytest.raises(NaspruneError, match=r"--max-time must be a positive, finite number of seconds"):
        SearchOptions(max_time=max_time).validate()
    with pytest.raises(NaspruneError, match="max_time"):
        run_ask_tell(object(), lambda config: {}, num_samples=1, max_time=max_time, progress=False)


def test_the_search_refuses_a_length_beyond_the_position_embeddings(checkpoint, tmp_path):
    # The tiny BERT has 64 positions; the latency objective would time sequences of 100 tokens.
    with pytest.raises(NaspruneError, match="100"):
        _search(checkpoint, tmp_path / "search", objectives=("error", "latency"), latency_seq_length=100)
    assert not (tmp_path / "search").exists()
    # Bad input into a folder with finished results: refused before anything there changes.
    out = tmp_path / "done"
    _search(checkpoint, out, objectives=("error", "latency"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(NaspruneError, match="100"):
        _search(checkpoint, out, objectives=("error", "latency"), latency_seq_length=100)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- ``nasprune run`` into a folder with results ------------------------------------------------
def test_run_refuses_another_search_before_training_and_overwrite_starts_afresh(tmp_path, capsys):
    from nasprune import cli

    data = _data(tmp_path / "files")
    write_tiny_bert(tmp_path / "model", num_layers=2)
    out = tmp_path / "run"
    flags = ["--quiet", "run", "--model", tmp_path / "model", "--train-file", data.train_file,
             "--validation-file", data.validation_file, "--test-file", data.test_file, "--max-seq-length", 16,
             "--epochs", 1, "--batch-size", 16, "--search-space", "small", "--num-samples", 3, "--output-dir", out]
    flags = [str(f) for f in flags]
    assert cli.main(flags) == 0
    first = json.loads((out / "summary.json").read_text())
    weights = (out / "supernet" / "epoch-1" / "model.safetensors").read_bytes()

    capsys.readouterr()
    assert cli.main([*flags, "--method", "random_search"]) == 2
    error = capsys.readouterr().err
    assert "method: nsga2 there, random_search now" in error and "--overwrite-output-dir" in error
    assert json.loads((out / "summary.json").read_text()) == first  # untouched, still complete

    assert cli.main([*flags, "--method", "random_search", "--seed", "1", "--overwrite-output-dir"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["method"] == "random_search" and second["complete"] is True
    assert second["checkpoint_fingerprint"] != first["checkpoint_fingerprint"]  # retrained with seed 1
    assert (out / "supernet" / "epoch-1" / "model.safetensors").read_bytes() != weights
    header = json.loads((out / JOURNAL_FILE).read_text().splitlines()[0])
    assert header["checkpoint_fingerprint"] == second["checkpoint_fingerprint"]
    assert not (out / LOCK_FILE).exists()
