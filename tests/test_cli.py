"""End to end: the ``nasprune`` command on a tiny random BERT and a tiny CSV task, offline."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import write_sentiment_csv, write_tiny_bert

def _write_data(path, n, seed):
    write_sentiment_csv(path, n, seed, text_column="sentence", label_column="sentiment", labels=("neg", "pos"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_tiny_bert(root / "model", num_layers=2, initializer_range=0.02)
    for split, n, seed in (("train", 96, 0), ("valid", 40, 1), ("test", 40, 2)):
        _write_data(root / f"{split}.csv", n, seed)
    return root


def run_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NASPRUNE_CACHE": str(cwd or ".")}
    return subprocess.run(
        [sys.executable, "-m", "nasprune.cli", "--quiet", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )


def _data_flags(root):
    return [
        "--model", root / "model",
        "--train-file", root / "train.csv",
        "--validation-file", root / "valid.csv",
        "--test-file", root / "test.csv",
        "--text-column", "sentence",
        "--label-column", "sentiment",
        "--max-seq-length", 16,
    ]


def test_run_trains_searches_and_reports(workspace):
    out = workspace / "run"
    result = run_cli(
        "run", *_data_flags(workspace), "--epochs", 2, "--batch-size", 16, "--learning-rate", 1e-3,
        "--method", "nsga2", "--num-samples", 12, "--search-space", "medium", "--output-dir", out,
        cwd=workspace,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # It ends by saying how to recover a chosen point: the export command with --finetune-epochs.
    assert f"--results {out} --pick N --finetune-epochs 1 --output-dir pruned-model" in result.stdout

    assert sorted(p.name for p in (out / "supernet").iterdir()) == ["epoch-1", "epoch-2"]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 12
    for column in ("valid_error", "test_error", "params", "relative_params", "macs", "elapsed_seconds", "pareto"):
        assert column in table.columns
    assert table["config_num_heads_0"].between(0, 4).all()
    # the initial design comes first: the largest, the smallest and the midpoint
    assert table.loc[0, "relative_params"] == pytest.approx(1.0)
    assert table.loc[1, "macs"] == 0
    pareto = table[table["pareto"]]
    assert pareto["test_error"].notna().all() and table.loc[~table["pareto"], "test_error"].isna().all()
    assert table["elapsed_seconds"].is_monotonic_increasing

    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "nsga2" and summary["search_space"] == "medium"
    assert summary["num_evaluated"] == 12 and 0 < summary["hypervolume"] <= 1
    assert len(summary["pareto_set"]) == len(pareto)
    assert summary["full_model"]["params"] == table.loc[0, "params"]
    assert (out / "pareto.png").stat().st_size > 1000
    report = (out / "report.html").read_text()  # the page: the plot embedded, the Pareto table
    assert report.count('src="data:image/png;base64,') == 1 and 'id="pareto-set"' in report
    assert "valid_error" in (out / "pareto.md").read_text()

    # export the most accurate Pareto point within 90% of the parameters: a smaller HF model
    exported = workspace / "exported"
    result = run_cli(
        "export", "--checkpoint", out / "supernet", "--results", out, "--max-params", 0.9,
        "--output-dir", exported, "--onnx", cwd=workspace,
    )
    assert result.returncode == 0, result.stderr
    from transformers import AutoModelForSequenceClassification

    import nasprune.export  # noqa: F401  registers the pruned classes with the Auto classes

    model = AutoModelForSequenceClassification.from_pretrained(exported)
    chosen = pareto[pareto["relative_params"] <= 0.9].sort_values("valid_error").iloc[0]
    assert sum(p.numel() for p in model.parameters()) == chosen["params"]
    assert (exported / "model.onnx").stat().st_size > 0 and (exported / "tokenizer.json").exists()
    result = run_cli("export", "--checkpoint", out / "supernet", "--results", out, "--max-params", 0.01,
                      "--output-dir", workspace / "none", cwd=workspace)
    assert result.returncode == 2 and "no Pareto point" in result.stderr

    # a second search of the same checkpoint, by MACs, with another method
    search_out = workspace / "search"
    result = run_cli(
        "search", "--checkpoint", out / "supernet", "--method", "local_search", "--num-samples", 6,
        "--objectives", "error,macs", "--output-dir", search_out, cwd=workspace,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((search_out / "summary.json").read_text())
    assert summary["objectives"] == ["valid_error", "relative_macs"]
    assert summary["search_space"] == "medium"  # taken from the checkpoint

    # three objectives, one of them measured latency
    latency_out = workspace / "search-latency"
    result = run_cli(
        "search", "--checkpoint", out / "supernet", "--method", "nsga2", "--num-samples", 4,
        "--objectives", "error,params,latency", "--latency-seq-length", 8, "--output-dir", latency_out,
        cwd=workspace,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(latency_out / "results.csv")
    assert (table["latency_seconds"] > 0).all() and table.loc[0, "relative_latency"] == 1.0  # the largest network is the reference
    summary = json.loads((latency_out / "summary.json").read_text())
    assert summary["objectives"] == ["valid_error", "relative_params", "relative_latency"]

    # the same seed gives the same run
    again = workspace / "search-again"
    run_cli(
        "search", "--checkpoint", out / "supernet", "--method", "local_search", "--num-samples", 6,
        "--objectives", "error,macs", "--output-dir", again, cwd=workspace,
    )
    first, second = pd.read_csv(search_out / "results.csv"), pd.read_csv(again / "results.csv")
    columns = [c for c in first.columns if c != "elapsed_seconds"]
    pd.testing.assert_frame_equal(first[columns], second[columns])


def test_finetune_keeps_its_checkpoint_instead_of_starting_over(workspace):
    # Resuming mid-run is tested in test_checkpoint_trust.py; here: the same command again keeps the
    # finished checkpoint, and another --epochs (another learning-rate schedule) is refused.
    out = workspace / "finetuned"
    flags = [*_data_flags(workspace), "--batch-size", 32, "--output-dir", out]
    assert run_cli("finetune", *flags, "--epochs", 1, cwd=workspace).returncode == 0
    first = (out / "epoch-1" / "model.safetensors").read_bytes()
    result = run_cli("finetune", *flags, "--epochs", 1, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert (out / "epoch-1" / "model.safetensors").read_bytes() == first
    info = json.loads((out / "epoch-1" / "nasprune.json").read_text())
    assert info["strategy"] == "standard" and [h["epoch"] for h in info["history"]] == [1]
    result = run_cli("finetune", *flags, "--epochs", 2, cwd=workspace)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs 1 -> 2" in result.stderr and "--overwrite-output-dir" in result.stderr
    assert [p.name for p in out.iterdir() if "epoch" in p.name] == ["epoch-1"]


def test_train_supernet_rewires_by_a_finetuned_model(workspace):
    flags = [*_data_flags(workspace), "--batch-size", 32, "--epochs", 1]
    assert run_cli("finetune", *flags, "--output-dir", workspace / "ft-for-rewiring", cwd=workspace).returncode == 0
    out = workspace / "rewired"
    result = run_cli("train-supernet", *flags, "--search-space", "small", "--rewire",
                     "--rewire-from", workspace / "ft-for-rewiring", "--rewire-examples", 32,
                     "--output-dir", out, cwd=workspace)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "epoch-1" / "nasprune.json").read_text())["rewiring"]
    assert record["source"] == str(workspace / "ft-for-rewiring" / "epoch-1") and record["num_examples"] == 32
    assert sorted(record["head"][0]) == list(range(4))
    assert record["started_from_source"] is True  # --start-from-finetuned is the default


@pytest.mark.parametrize(
    "args, message",
    [
        (["train-supernet", "--task", "nosuchtask", "--output-dir", "x"], "unknown task"),
        (["search", "--checkpoint", "missing-dir", "--output-dir", "x"], "does not exist"),
        (["run", "--method", "gradient_descent"], "unknown search method"),
        (["run", "--search-space", "huge", "--epochs", "1"], "unknown search space"),
        (["run", "--objectives", "error,speed"], "--objectives"),
        (["run", "--model", "/no/such/model/dir", "--task", "rotten_tomatoes"], "model path /no/such/model/dir does not exist"),
        (["run", "--train-file", "garbage.csv", "--text-column", "sentence"], "garbage.csv"),
        (["run", "--epochs", "0"], "--epochs"),
        (["run", "--rewire", "--rewire-importance", "magnitude"], "--rewire-importance"),
        (["run", "--rewire-finetune-examples", "0"], "--rewire-finetune-examples"),
        (["train-supernet", "--no-rewire", "--rewire-from", "somewhere", "--output-dir", "x"], "needs --rewire"),
    ],
)
def test_bad_input_gets_one_clear_message(workspace, args, message):
    (workspace / "garbage.csv").write_bytes(b"\x00\x01\x02 not, a \"csv\n\x00")
    args = [a if a != "garbage.csv" else str(workspace / "garbage.csv") for a in args]
    result = run_cli(*args, "--max-train-samples", 8, cwd=workspace) if args[0] == "run" else run_cli(*args, cwd=workspace)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message.lower() in result.stderr.lower(), result.stderr
