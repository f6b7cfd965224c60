"""Weight-sharing NAS (``nasprune run``) against standard NAS (``nasprune nas``) on the same data.

Both sides see exactly the same data: the offline MiniLM-L6 on ``rotten_tomatoes``, the same
capped training set, sequence length, validation and test subsamples (``--data-seed`` fixed), the
same objectives, search space and searcher, one process on one CPU thread each, seeds 0, 1, 2.

For every run this script records, from outside the process:

- the wall-clock time of the whole command, and the moment the weight-sharing search started
  (the first appearance of its ``search`` progress bar on stderr), so that the hypervolume over
  time of weight-sharing NAS starts at the beginning of the command: fine-tuning the copy the
  importance is measured on, the importance itself and super-network training all count;
- the CPU time of the command and of every process it waited for (``getrusage``), since the
  machine was shared with other jobs and wall-clock time alone overstates the cost of whichever
  run met more load.

Then it computes the hypervolume over time with the project's definition
(:mod:`nasprune.analysis`, reference point 1.1, error and relative MACs), and writes a table,
per-seed traces and a plot. ``nasprune compare`` is run on the same folders for its own tables.

    nice -n 5 env OMP_NUM_THREADS=1 python experiments/ws_vs_snas.py            # run what is missing, then analyse
    python experiments/ws_vs_snas.py --analyse-only                             # only the tables and plots

A run whose ``summary.json`` says ``complete`` and whose ``timing.json`` exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune import analysis

REPO = Path(__file__).resolve().parents[1]
SEARCH_BAR = b"search:"

#: The data both sides see (the same seeded caps: the same examples).
DATA_FLAGS = [
    "--max-train-samples", "2000",
    "--max-seq-length", "64",
    "--max-eval-samples", "500",
    "--max-test-samples", "1000",
    "--data-seed", "0",
]
OBJECTIVES = "error,macs"
SPACE = "medium"
METHOD = "local_search"
OBJECTIVE_COLUMNS = ["valid_error", "relative_macs"]


def ws_command(seed: int, out: Path) -> list[str]:
    """``nasprune run`` with today's defaults (the quick preset) except the data caps."""
    return [sys.executable, "-m", "nasprune", "run", "--quick", *DATA_FLAGS,
            "--objectives", OBJECTIVES, "--search-space", SPACE, "--method", METHOD,
            "--seed", str(seed), "--output-dir", str(out), "--overwrite-output-dir"]


def snas_command(seed: int, out: Path, trials: int, epochs: int, learning_rate: str) -> list[str]:
    """``nasprune nas``: every candidate fine-tuned from the pre-trained model for a fixed number of epochs."""
    return [sys.executable, "-m", "nasprune", "nas", *DATA_FLAGS,
            "--objectives", OBJECTIVES, "--search-space", SPACE, "--method", METHOD,
            "--n-workers", "1", "--num-threads", "1", "--max-trials", str(trials),
            "--epochs", str(epochs), "--learning-rate", learning_rate,
            "--seed", str(seed), "--output-dir", str(out), "--overwrite-output-dir"]


def is_complete(out: Path) -> bool:
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(summary.get("complete", True)) and (out / "timing.json").is_file()


def _tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its live descendants, plus the children each of
    them has already waited for (``cutime``/``cstime``), read from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(v) for v in fields[11:15]) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(times.get(pid, 0.0) for pid in tree)


def timed_run(command: list[str], out: Path) -> dict:
    """Run ``command``, stream its stderr to ``out/stderr.log``, and return its timing."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    search_started: list[float] = []
    with open(out.parent / f"{out.name}.stderr.log", "wb") as log, open(out.parent / f"{out.name}.stdout.log", "wb") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=REPO)

        def pump() -> None:
            # Read as it comes (tqdm writes without newlines) so the search start is timed to the chunk.
            tail = b""
            while chunk := os.read(process.stderr.fileno(), 65536):
                log.write(chunk)
                log.flush()
                if not search_started and SEARCH_BAR in tail + chunk:
                    search_started.append(time.time())
                tail = chunk[-16:]

        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            # Wall clock against CPU time of the whole process tree, to put results on a CPU-time axis.
            while not done.wait(1.0):
                seconds = _tree_cpu_seconds(process.pid)
                if not samples or seconds >= samples[-1][1]:  # 0 once the process is gone
                    samples.append((time.time() - started, seconds))

        reader = threading.Thread(target=pump)
        sampler = threading.Thread(target=sample)
        reader.start()
        sampler.start()
        returncode = process.wait()
        done.set()
        reader.join()
        sampler.join()
    finished = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing = {
        "command": command,
        "returncode": returncode,
        "started": started,
        "wall_seconds": finished - started,
        "search_started_seconds": (search_started[0] - started) if search_started else None,
        "cpu_user_seconds": after.ru_utime - before.ru_utime,
        "cpu_system_seconds": after.ru_stime - before.ru_stime,
        "load_average_at_end": os.getloadavg(),
    }
    pd.DataFrame(samples, columns=["wall_seconds", "cpu_seconds"]).to_csv(out / "cpu_samples.csv", index=False)
    if returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({returncode}); see {out}.stderr.log")
    (out / "timing.json").write_text(json.dumps(timing, indent=1))
    return timing


# --- analysis ---------------------------------------------------------------------------
AXES = {"seconds": "wall-clock seconds", "cpu_seconds": "CPU seconds (process tree)"}


def trace(out: Path, kind: str) -> pd.DataFrame:
    """Hypervolume (project definition) over seconds since the command started, wall clock and,
    where the run was sampled, CPU time of its process tree."""
    table = pd.read_csv(out / "results.csv")
    timing = json.loads((out / "timing.json").read_text())
    if kind == "snas" and (out / "trials.jsonl").is_file():
        # Every epoch's report, not only each trial's best epoch in results.csv: an epoch-1 result
        # is known before the trial ends, so standard NAS gets credit for it as early as it came.
        events = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
        table = pd.DataFrame([{**e["result"], "elapsed_seconds": e["result"].get("st_tuner_time", e["elapsed"])}
                              for e in events if e.get("event") == "result"])
    if kind == "ws":
        offset = timing["search_started_seconds"]  # everything before the search is charged
    else:
        # The tuner's clock starts after the data are loaded: charge that start-up too, estimated as
        # the command's wall time less the tuner's search time.
        summary = json.loads((out / "summary.json").read_text())
        offset = max(0.0, timing["wall_seconds"] - float(summary.get("search_seconds", timing["wall_seconds"])))
    points = analysis.hypervolume_over_time(
        table, OBJECTIVE_COLUMNS, "elapsed_seconds", analysis.reference_point(len(OBJECTIVE_COLUMNS))
    )
    wall = points["elapsed_seconds"].to_numpy(float) + offset
    samples_path = out / "cpu_samples.csv"
    cpu = np.full_like(wall, np.nan)
    if samples_path.is_file():
        samples = pd.read_csv(samples_path)
        if len(samples) > 1:
            cpu = np.interp(wall, np.r_[0.0, samples["wall_seconds"]], np.r_[0.0, samples["cpu_seconds"]])
    return pd.DataFrame({"seconds": wall, "cpu_seconds": cpu, "hypervolume": points["hypervolume"]})


def at(trace_: pd.DataFrame, seconds: np.ndarray, axis: str = "seconds") -> np.ndarray:
    """The step function of a trace at the given times (0 before its first result)."""
    times = trace_[axis].to_numpy(float)
    index = np.searchsorted(times, seconds, side="right") - 1
    return np.where(index >= 0, trace_["hypervolume"].to_numpy(float)[np.clip(index, 0, None)], 0.0)


def first_time_reaching(trace_: pd.DataFrame, level: float, axis: str = "seconds") -> float:
    """When the trace first reaches ``level`` (NaN if never)."""
    reached = trace_[trace_["hypervolume"] >= level - 1e-12]
    return float(reached[axis].iloc[0]) if len(reached) else float("nan")


def analyse(runs: Path, results: Path, seeds: list[int]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    traces: dict[str, dict[int, pd.DataFrame]] = {"ws": {}, "snas": {}}
    for seed in seeds:
        for kind in ("ws", "snas"):
            out = runs / f"{kind}-seed{seed}"
            if is_complete(out):
                traces[kind][seed] = trace(out, kind)
                traces[kind][seed].assign(seed=seed, kind=kind).to_csv(
                    results / f"trace_{kind}_seed{seed}.csv", index=False)
    rows = []
    for seed in seeds:
        row: dict = {"seed": seed}
        for kind in ("ws", "snas"):
            if seed not in traces[kind]:
                continue
            t, out = traces[kind][seed], runs / f"{kind}-seed{seed}"
            timing = json.loads((out / "timing.json").read_text())
            summary = json.loads((out / "summary.json").read_text())
            full = summary.get("full_model") or {}
            row[f"{kind}_final_hv"] = float(t["hypervolume"].iloc[-1])
            row[f"{kind}_summary_hv"] = summary.get("hypervolume")
            row[f"{kind}_evaluations"] = len(pd.read_csv(out / "results.csv"))
            row[f"{kind}_wall_s"] = timing["wall_seconds"]
            row[f"{kind}_cpu_s"] = timing["cpu_user_seconds"] + timing["cpu_system_seconds"]
            row[f"{kind}_last_result_wall_s"] = float(t["seconds"].iloc[-1])
            row[f"{kind}_last_result_cpu_s"] = float(t["cpu_seconds"].iloc[-1])
            row[f"{kind}_full_test_error"] = full.get("test_error")
        if "ws_final_hv" in row:
            row["ws_search_started_wall_s"] = json.loads(
                (runs / f"ws-seed{seed}" / "timing.json").read_text())["search_started_seconds"]
        if "ws_final_hv" in row and "snas_final_hv" in row:
            ws, snas = traces["ws"][seed], traces["snas"][seed]
            row["ws_wall_s_to_snas_final_hv"] = first_time_reaching(ws, row["snas_final_hv"])
            row["ws_cpu_s_to_snas_final_hv"] = first_time_reaching(ws, row["snas_final_hv"], "cpu_seconds")
            row["snas_wall_s_to_snas_final_hv"] = first_time_reaching(snas, row["snas_final_hv"])
            row["snas_cpu_s_to_snas_final_hv"] = first_time_reaching(snas, row["snas_final_hv"], "cpu_seconds")
            row["snas_hv_at_ws_last_wall_s"] = float(at(snas, np.array([row["ws_last_result_wall_s"]]))[0])
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty or len(table.columns) == 1:
        print("no run is complete yet")
        return
    median = table.drop(columns="seed").median(numeric_only=True)
    table_out = pd.concat([table, pd.DataFrame([{"seed": "median", **median.to_dict()}])], ignore_index=True)
    table_out.to_csv(results / "summary.csv", index=False)
    (results / "summary.md").write_text(analysis.markdown_table(table_out, float_format="{:.4g}") + "\n")
    print(table_out.T.to_string())

    # Median trace over the finished seeds of each side on a common grid, band from worst to best seed.
    figure = analysis.new_figure(12.0, 8.0)
    median_rows = {}
    for column, axis in enumerate(AXES):
        usable = {k: [t for t in traces[k].values() if np.isfinite(t[axis]).all()] for k in traces}
        ends = [float(t[axis].iloc[-1]) for k in usable for t in usable[k]]
        if not ends:
            continue
        grid = np.linspace(0.0, max(ends) * 1.02, 600)
        median_rows[axis] = grid
        # Top: the whole range. Bottom: the same, zoomed above 0.8 (the empty model alone gives ~0.73,
        # so everything that tells the methods apart happens up there).
        for row, zoom in enumerate((False, True)):
            axes = figure.add_subplot(2, 2, 2 * row + column + 1)
            for kind, label, colour in (("ws", "weight-sharing NAS (nasprune run)", "tab:blue"),
                                        ("snas", "standard NAS (nasprune nas)", "tab:orange")):
                done = usable[kind]
                if not done:
                    continue
                values = np.vstack([at(t, grid, axis) for t in done])
                median_rows[f"{kind}_{axis}_median"] = np.median(values, axis=0)
                axes.step(grid, np.median(values, axis=0), where="post", color=colour,
                          label=f"{label}, median of {len(done)} seeds")
                axes.fill_between(grid, values.min(axis=0), values.max(axis=0), step="post", color=colour, alpha=0.2)
            axes.set_xlabel(f"{AXES[axis]} since the command started")
            axes.set_ylabel("hypervolume (error x relative MACs, ref. 1.1)")
            axes.set_ylim(*((0.8, 0.92) if zoom else (0.0, 0.95)))
            axes.grid(alpha=0.3)
            axes.legend(loc="lower right", fontsize=8)
    figure.suptitle("MiniLM-L6 on rotten_tomatoes, the same data on both sides: hypervolume over time "
                    "(super-network training included)")
    pd.DataFrame({k: pd.Series(v) for k, v in median_rows.items()}).to_csv(results / "median_traces.csv", index=False)
    analysis.save_figure(figure, results / "hypervolume_over_time.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", type=Path, default=Path("/work/runs/ws_vs_snas"))
    parser.add_argument("--results-dir", type=Path, default=REPO / "experiments/results/ws_vs_snas")
    parser.add_argument("--snas-trials", type=int, default=6)
    parser.add_argument("--snas-epochs", type=int, default=2)
    parser.add_argument("--snas-learning-rate", default="1e-4", help="the quick preset's, as weight-sharing NAS uses")
    parser.add_argument("--only", choices=["ws", "snas"], help="run only this side")
    parser.add_argument("--analyse-only", action="store_true")
    args = parser.parse_args()
    if not args.analyse_only:
        for seed in args.seeds:
            for kind in ("ws", "snas"):
                if args.only and kind != args.only:
                    continue
                out = args.runs_dir / f"{kind}-seed{seed}"
                if is_complete(out):
                    continue
                command = (ws_command(seed, out) if kind == "ws"
                           else snas_command(seed, out, args.snas_trials, args.snas_epochs, args.snas_learning_rate))
                print(f"{time.strftime('%H:%M:%S')} {' '.join(command[1:])}", flush=True)
                timing = timed_run(command, out)
                print(f"  wall {timing['wall_seconds']:.0f}s, cpu {timing['cpu_user_seconds'] + timing['cpu_system_seconds']:.0f}s",
                      flush=True)
    analyse(args.runs_dir, args.results_dir, args.seeds)
    if args.analyse_only or not args.only:
        # nasprune compare's own view of the same folders. Its time axis charges the fine-tuned copy's
        # and the super-network's training epochs, and the rewiring where the checkpoint recorded its
        # seconds (these runs predate that), but not loading models and data in between.
        compared = args.runs_dir.with_name(args.runs_dir.name + "_compare")
        subprocess.run([sys.executable, "-m", "nasprune", "--quiet", "compare", str(args.runs_dir),
                        "--objectives", OBJECTIVES, "--output-dir", str(compared)], check=False)
        kept = args.results_dir / "compare"
        kept.mkdir(parents=True, exist_ok=True)
        for path in compared.glob("*"):
            if path.suffix in {".csv", ".md", ".png"}:
                shutil.copyfile(path, kept / path.name)


if __name__ == "__main__":
    main()
