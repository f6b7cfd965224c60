"""Standard NAS on Ray (``nasprune nas --backend ray``): a two-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head and one worker node, one CPU each), the tiny BERT of
test_standard_nas, trials placed on both nodes, a driver killed and rerun, a node removed while
its trial runs, and the same results as the local backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from conftest import write_tiny_bert
from nasprune.cli import main as nasprune_main
from nasprune.snas import JOURNAL_FILE, run_standard_nas
from nasprune.snas import storage
from nasprune.snas.resume import checkpointed_reports, last_error_line
from test_cli import _write_data

TRAINING = dict(learning_rate=5e-3, batch_size=8, warmup_ratio=0.0, num_threads=1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_snas")
    write_tiny_bert(root / "model", num_layers=2, initializer_range=0.02)
    for split, n, seed in (("train", 64, 0), ("valid", 32, 1), ("test", 32, 2)):
        _write_data(root / f"{split}.csv", n, seed)
    return root


@pytest.fixture(scope="module")
def cluster():
    import ray  # in the dev extra: CI runs these tests
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker_node = cluster.add_node(num_cpus=1)
    if ray.is_initialized():  # left by another test module
        ray.shutdown()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    cluster.wait_for_nodes()
    cluster.worker_node_id = worker_node.node_id
    cluster.head_node_id = cluster.head_node.node_id
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _data_options(root):
    from nasprune.data import DataOptions

    return DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), text_column="sentence", label_column="sentiment",
                       max_seq_length=16)


def _events(output):
    path = output / JOURNAL_FILE
    events = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            events.append(json.loads(line))
        except ValueError:
            pass  # cut off by a kill
    return events


# --- without a cluster ----------------------------------------------------------------------
def test_without_ray_one_line_says_how_to_install_it(workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "nasprune.snas.ray_backend", raising=False)
    code = nasprune_main(["nas", "--model", str(workspace / "model"), "--backend", "ray", "--max-trials", "2",
                          "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "nasprune: error: --backend ray needs Ray, which is not installed: pip install 'nasprune[ray]'"
    ]


def test_ray_flags_need_the_ray_backend_and_ray_loads_only_for_it(workspace, tmp_path):
    from nasprune.errors import NaspruneError

    with pytest.raises(NaspruneError, match="--storage, --gpus-per-trial only apply with --backend ray"):
        run_standard_nas(str(workspace / "model"), _data_options(workspace), tmp_path, max_trials=1,
                         storage="s3://bucket/x", gpus_per_trial=1)
    with pytest.raises(NaspruneError, match="--cpus-per-trial must be positive"):
        run_standard_nas(str(workspace / "model"), _data_options(workspace), tmp_path, max_trials=1,
                         backend="ray", cpus_per_trial=0)
    code = ("import sys; import nasprune.cli.nas, nasprune.snas.launch; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_checkpoint_at_a_uri_goes_up_pointer_last_and_comes_back(tmp_path):
    local = tmp_path / "local"
    for epoch in (1, 2):
        folder = local / f"epoch-{epoch}"
        folder.mkdir(parents=True)
        (folder / "trial.json").write_text(json.dumps({"epoch": epoch, "reports": [{"epoch": e} for e in range(1, epoch + 1)]}))
        (local / "latest.json").write_text(json.dumps({"folder": folder.name}))
        if epoch == 2:
            import shutil

            shutil.rmtree(local / "epoch-1")  # the worker keeps only its last epoch
        uri = f"file://{tmp_path / 'remote' / 'checkpoints'}"
        storage.upload_checkpoint(local, uri)
        assert [r["epoch"] for r in checkpointed_reports(uri)] == list(range(1, epoch + 1))
    assert sorted(p.name for p in (tmp_path / "remote" / "checkpoints").iterdir()) == ["epoch-2", "latest.json"]
    storage.download_folder(uri, tmp_path / "back")
    assert [r["epoch"] for r in checkpointed_reports(tmp_path / "back")] == [1, 2]
    copy = f"file://{tmp_path / 'copy'}"
    storage.copy_folder(uri, copy)
    assert storage.folder_exists(copy) and not storage.folder_exists(f"file://{tmp_path / 'none'}")
    storage.delete_folder(copy)
    assert not storage.folder_exists(copy)


# --- on a two-node cluster ------------------------------------------------------------------
def test_moasha_on_two_nodes_resumes_after_the_driver_is_killed(workspace, cluster, tmp_path):
    """MO-ASHA over both nodes; the driver (``nasprune nas --backend ray``) is killed after a trial
    ended while another runs, and the same experiment run again finishes without running a
    finished trial again (here the rerun's driver is this test process)."""
    output = tmp_path / "out"
    # Epochs of a second or more, so that a trial still trains when another has ended, even on an idle machine.
    # (1,500 examples were too few: on the idle machine a whole trial sometimes ended between two looks.)
    _write_data(tmp_path / "train.csv", 4000, 5)
    data = _data_options(workspace)
    data.train_file = str(tmp_path / "train.csv")
    command = [
        sys.executable, "-m", "nasprune.cli", "nas", "--backend", "ray", "--ray-address", cluster.address,
        "--model", str(workspace / "model"), "--train-file", data.train_file,
        "--validation-file", str(workspace / "valid.csv"), "--test-file", str(workspace / "test.csv"),
        "--text-column", "sentence", "--label-column", "sentiment", "--max-seq-length", "16",
        "--method", "moasha", "--max-trials", "5", "--epochs", "2", "--learning-rate", "5e-3",
        "--batch-size", "8", "--warmup-ratio", "0", "--output-dir", str(output),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and driver.poll() is None:
            events = _events(output)
            ended = {e["trial_id"] for e in events if e["event"] == "end"}
            placed = {e["trial_id"] for e in events if e["event"] == "placed"}
            if ended and placed - ended:
                break
            time.sleep(0.05)
        assert driver.poll() is None, f"the search ended before it could be killed: {driver.stderr.read()[-2000:]}"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        driver.kill()
        driver.wait()
    before = _events(output)
    finished_before = {e["trial_id"] for e in before if e["event"] == "end"}

    result = run_standard_nas(str(workspace / "model"), data, output, backend="ray",
                              ray_address=cluster.address, method="moasha", max_trials=5, epochs=2,
                              sleep_time=0.2, **TRAINING)
    events = _events(output)
    rerun_starts = [e for e in events[len(before):] if e["event"] == "start"]
    # No finished trial ran again: the rerun starts new trial ids only, and continues unfinished ones.
    assert rerun_starts and not finished_before & {e["trial_id"] for e in rerun_starts}
    assert not finished_before & {e["continues"] for e in rerun_starts}
    summary = result.summary
    assert summary["runs"] == 2 and summary["trial_counts"]["started"] == 5 and summary["method"] == "moasha"
    assert summary["backend"]["name"] == "ray" and summary["backend"]["nodes"] == 2
    assert summary["n_workers"] == 2  # the cluster's room: two CPUs, one per trial
    trials = pd.read_csv(output / "trials.csv")
    assert set(trials["status"]) <= {"completed", "stopped_early"}
    nodes = {node for cell in trials["nodes"] for node in str(cell).split(";")}
    assert nodes == {cluster.head_node_id, cluster.worker_node_id}, "trials ran on both nodes"
    table = pd.read_csv(output / "results.csv")
    assert len(table) == 5 and (table.loc[table["status"] == "completed", "epochs"] == 2).all()


def test_any_syne_tune_scheduler_runs_on_the_ray_backend(workspace, cluster, tmp_path, monkeypatch):
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.optimizer.baselines import ASHA

    from nasprune.snas.ray_backend import RayTrialBackend, TrialResources
    from nasprune.spaces import get_search_space
    from nasprune.subnet import ModelShape

    space = get_search_space("layer", ModelShape(2, 4, 8, 32, 64))
    data = _data_options(workspace)
    fixed = {"model": str(workspace / "model"), "train_file": data.train_file, "validation_file": data.validation_file,
             "test_file": data.test_file, "text_column": "sentence", "label_column": "sentiment",
             "max_seq_length": 16, "search_space": "layer", "epochs": 2, "num_threads": 1}
    config_space = {**space.config_space, **fixed}
    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path))
    # Checkpoints at a URI: each trial works on a local copy and uploads every epoch's checkpoint.
    backend = RayTrialBackend(f"file://{tmp_path / 'storage'}", TrialResources(cpus_per_trial=1))
    tuner = Tuner(
        trial_backend=backend,
        scheduler=ASHA(config_space, metric="valid_error", time_attr="epoch", max_t=2, random_seed=0),
        stop_criterion=StoppingCriterion(max_num_trials_finished=3),
        n_workers=2, sleep_time=0.2, save_tuner=False,
    )
    tuner.run()
    # A trial that raises is not retried: it fails at once, with its error in std.err.
    bad = backend.start_trial({**fixed, "layer_0": 1, "layer_1": 1, "bogus": 1})
    deadline = time.monotonic() + 60
    while backend.busy_trial_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    statuses, _ = backend.fetch_status_results([bad.trial_id])
    assert statuses[bad.trial_id][1] == "Failed" and len(backend.nodes[bad.trial_id]) == 1  # one attempt
    message = "nasprune.snas.worker: error: unknown arguments for the 'layer' space: bogus"
    assert last_error_line(backend.trial_path(bad.trial_id)) == message
    backend.close()
    results = tuner.callbacks[0].dataframe()
    assert results["trial_id"].nunique() >= 3
    for trial_id, trial in results.groupby("trial_id"):
        assert list(trial["epoch"]) == list(range(1, len(trial) + 1)) and len(trial) <= 2
        checkpoint = backend.checkpoint_trial_path(trial_id)
        assert checkpoint.startswith("file://") and (tmp_path / "storage").is_dir()
        saved = checkpointed_reports(checkpoint)
        assert [r["epoch"] for r in saved][: len(trial)] == list(trial["epoch"])
        assert [r["valid_error"] for r in saved][: len(trial)] == pytest.approx(list(trial["valid_error"]))
    for row in results.itertuples():  # the layer space keeps whole layers: MACs follow the layers kept
        kept = sum(getattr(row, f"config_layer_{i}") for i in range(2))
        assert row.relative_macs == pytest.approx(kept / 2)


def test_nsga2_survives_losing_a_node_with_the_local_backends_results(workspace, cluster, tmp_path):
    """NSGA-II over both nodes; the worker node is removed once a trial on it reported its first
    epoch: Ray retries that trial on the head node from its checkpoint, and the results equal
    those of the local backend (same seeds, same sub-networks, same errors)."""
    output = tmp_path / "ray"
    removed = threading.Event()
    # Epochs of a few seconds, so that the node goes while its trial still trains.
    _write_data(tmp_path / "train.csv", 3000, 5)
    data = _data_options(workspace)
    data.train_file = str(tmp_path / "train.csv")

    def remove_the_worker_node():
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            events = _events(output)
            on_worker = {e["trial_id"] for e in events
                         if e["event"] == "placed" and e["node"] == cluster.worker_node_id}
            if any(e["event"] == "result" and e["trial_id"] in on_worker for e in events):
                worker_node = next(n for n in cluster.worker_nodes)
                cluster.remove_node(worker_node)
                removed.set()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=remove_the_worker_node, daemon=True)
    watcher.start()
    settings = dict(method="nsga2", max_trials=2, epochs=3, seed=1, sleep_time=0.2, **TRAINING)
    on_ray = run_standard_nas(str(workspace / "model"), data, output, backend="ray",
                              ray_address=cluster.address, n_workers=2, **settings)
    watcher.join(timeout=5)
    assert removed.is_set(), "no trial reported from the worker node"

    trials = pd.read_csv(output / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) <= {"completed", "failed"}
    moved = trials[trials["nodes"].str.contains(";")]
    assert len(moved) >= 1, "the trial of the removed node was retried"
    for row in moved.itertuples():
        assert row.nodes.split(";")[0] == cluster.worker_node_id and row.nodes.split(";")[-1] == cluster.head_node_id
        if row.status == "completed":
            epochs = [e["result"]["epoch"] for e in _events(output)
                      if e["event"] == "result" and e["trial_id"] == row.trial_id]
            assert epochs == [1, 2, 3], "every epoch reported once, the retry resumed from its checkpoint"

    local = run_standard_nas(str(workspace / "model"), data, tmp_path / "local", n_workers=2,
                             **settings)
    assert list(pd.read_csv(output / "results.csv").columns) == list(pd.read_csv(tmp_path / "local" / "results.csv").columns)
    local_trials = pd.read_csv(tmp_path / "local" / "trials.csv")
    assert [c for c in trials.columns if c != "nodes"] == list(local_trials.columns)
    completed = on_ray.table[on_ray.table["status"] == "completed"].set_index("subnet")
    expected = local.table.set_index("subnet").loc[completed.index]
    for column in ("valid_error", "test_error", "params", "macs", "best_epoch"):
        assert completed[column].tolist() == pytest.approx(expected[column].tolist()), column
    # Training was the same, epoch by epoch, also for the trial resumed on the other node.
    assert len(completed) >= 1
    assert _training_losses(output) == pytest.approx(
        {key: loss for key, loss in _training_losses(tmp_path / "local").items() if key in _training_losses(output)}
    )


def _training_losses(output):
    """{(sub-network, epoch): training loss} of every completed trial in the journal."""
    events = _events(output)
    configs = {e["trial_id"]: json.dumps({k: e["config"][k] for k in ("num_layers", "num_heads", "num_units")})
               for e in events if e["event"] == "start"}
    completed = {e["trial_id"] for e in events if e["event"] == "end" and e["status"] == "completed"}
    return {(configs[e["trial_id"]], e["result"]["epoch"]): e["result"]["train_loss"]
            for e in events if e["event"] == "result" and e["trial_id"] in completed}
