"""How standard NAS scales past this machine, by simulation: hypervolume over simulated wall time
for 1, 4, 16 and 64 workers, MO-ASHA against NSGA-II.

The per-epoch curves of a real ``nasprune nas`` run (its ``trials.jsonl``: every trial's
validation error, relative size and worker time after each epoch) become a Syne Tune tabular
blackbox. Syne Tune's simulator backend (``UserBlackboxBackend`` with ``SimulatorCallback``) then
runs our real schedulers (:func:`nasprune.snas.make_standard_nas_scheduler`: MO-ASHA and NSGA-II,
the same objects ``nasprune nas`` uses) with K workers on a simulated clock: a trial "trains" for
the recorded time of each epoch and reports the recorded metrics. A suggested config that was not
recorded gets the curve of its nearest recorded config (Syne Tune's surrogate blackbox with a
1-nearest-neighbour regressor on the standardised config), so every point on a simulated front is a
measured (error, size) pair of a sub-network that really was fine-tuned.

What this shows and what it cannot: how the wall time to a given hypervolume shrinks with the number
of workers, and how much MO-ASHA's early stopping buys at each scale, under the assumption that
trials do not slow each other down (one GPU or CPU share per worker, as on a cluster). It cannot
show a front better than the recorded trials allow: with few recorded configs, many workers soon
run out of new sub-networks to find.

Usage::

    # record the curves (a real standard-NAS run; see README.md in the output folder), then simulate
    python experiments/simulate_scaling.py --journal nas-record/trials.jsonl
    # simulate again from the curves saved by the first call
    python experiments/simulate_scaling.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.files import save_figure_atomic, write_csv_atomic, write_text_atomic

OUTPUT = Path(__file__).resolve().parent / "results" / "ray_scaling"
CURVES_FILE = "recorded_curves.csv"
METRICS = ["valid_error", "relative_params"]
VARIABLES = ["num_layers", "num_heads", "num_units"]
METHODS = ("moasha", "nsga2")
WORKERS = (1, 4, 16, 64)


# --- the recorded curves ---------------------------------------------------------------------
def curves_from_journal(journal: Path) -> tuple[pd.DataFrame, dict]:
    """One row per trial and epoch of a ``nasprune nas`` journal, for the trials that reported
    every epoch: config, ``valid_error``, ``relative_params`` and ``worker_seconds`` (Syne Tune's
    ``st_worker_time``: the trial's time since its reporter was made, so loading the data and the
    model count, starting the interpreter and importing torch do not)."""
    settings, starts, rows = {}, {}, []
    for line in journal.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "settings":
            settings = event["settings"]
        elif event["event"] == "start":
            starts[event["trial_id"]] = {name: int(event["config"][name]) for name in VARIABLES}
        elif event["event"] == "result":
            result = event["result"]
            rows.append({"trial_id": event["trial_id"], **starts[event["trial_id"]], "epoch": int(result["epoch"]),
                         "valid_error": result["valid_error"], "relative_params": result["relative_params"],
                         "worker_seconds": result["st_worker_time"]})
    curves = pd.DataFrame(rows).drop_duplicates(["trial_id", "epoch"], keep="last")
    epochs = int(settings["epochs"])
    complete = curves.groupby("trial_id")["epoch"].transform("nunique") == epochs
    curves = curves[complete].sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    return curves, settings


def recorded_blackbox(curves: pd.DataFrame, config_space: dict, epochs: int):
    """The curves as a Syne Tune blackbox defined on the whole ``config_space``: a tabular blackbox
    of the recorded configs, wrapped in a 1-nearest-neighbour surrogate."""
    from sklearn.neighbors import KNeighborsRegressor
    from syne_tune.blackbox_repository import add_surrogate
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import randint

    # A config recorded twice (two trials of the same sub-network) keeps its first trial.
    firsts = curves.groupby(VARIABLES, sort=False)["trial_id"].first()
    curves = curves[curves["trial_id"].isin(firsts.to_numpy())]
    trials = list(dict.fromkeys(curves["trial_id"]))
    hyperparameters = (curves.drop_duplicates("trial_id").set_index("trial_id").loc[trials, VARIABLES]
                       .reset_index(drop=True))
    objectives = ["valid_error", "relative_params", "elapsed_time"]
    values = np.zeros((len(trials), 1, epochs, len(objectives)))
    for i, trial in enumerate(trials):
        curve = curves[curves["trial_id"] == trial].sort_values("epoch")
        values[i, 0, :, 0] = curve["valid_error"]
        values[i, 0, :, 1] = curve["relative_params"]
        values[i, 0, :, 2] = curve["worker_seconds"]
    table = BlackboxTabular(
        hyperparameters=hyperparameters, configuration_space=config_space,
        fidelity_space={"epoch": randint(1, epochs)}, objectives_evaluations=values,
        fidelity_values=np.arange(1, epochs + 1), objectives_names=objectives,
    )
    return add_surrogate(table, surrogate=KNeighborsRegressor(n_neighbors=1), configuration_space=config_space)


# --- one simulated experiment -------------------------------------------------------------------
def simulate(blackbox, space, method: str, workers: int, epochs: int, max_time: float, seed: int) -> pd.DataFrame:
    """Every report of ``method`` with ``workers`` workers for ``max_time`` simulated seconds."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    from nasprune.snas import make_standard_nas_scheduler

    scheduler = make_standard_nas_scheduler(
        method, space.config_space, METRICS, epochs, space.initial_design(), seed, space
    )
    # One simulated second per idle tuner loop: small against epochs of tens of seconds.
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time", tuner_sleep_time=1.0)
    callback = SimulatorCallback()
    tuner = Tuner(
        trial_backend=backend, scheduler=scheduler, stop_criterion=StoppingCriterion(max_wallclock_time=max_time),
        n_workers=workers, sleep_time=0, callbacks=[callback], results_update_interval=1e9,
        print_update_interval=1e9, save_tuner=False, tuner_name=f"simulate-{method}-{workers}-{seed}",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the tuner prints its status tables
        tuner.run()
    results = callback.dataframe()
    return results[results["st_tuner_time"] <= max_time]


def hypervolume_trace(results: pd.DataFrame) -> pd.DataFrame:
    """Hypervolume of every epoch reported so far (as ``nasprune nas`` counts it), over simulated time."""
    trace = analysis.hypervolume_over_time(results, METRICS, "st_tuner_time", analysis.reference_point(len(METRICS)))
    return trace.rename(columns={"st_tuner_time": "simulated_seconds"})


def hypervolume_at(trace: pd.DataFrame, seconds: float) -> float:
    reached = trace[trace["simulated_seconds"] <= seconds]["hypervolume"]
    return float(reached.iloc[-1]) if len(reached) else 0.0


def time_to(trace: pd.DataFrame, target: float) -> float:
    reached = trace[trace["hypervolume"] >= target - 1e-12]["simulated_seconds"]
    return float(reached.iloc[0]) if len(reached) else float("nan")


# --- the whole study ----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journal", type=Path, help=f"trials.jsonl of a real nasprune nas run (default: the "
                        f"curves saved in {OUTPUT / CURVES_FILE})")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method and number of workers")
    parser.add_argument("--budget-trials", type=float, default=24.0,
                        help="simulated time budget, in mean full-trial durations (one worker runs about this many)")
    args = parser.parse_args()
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    # Syne Tune writes every tuner's folder under SYNETUNE_FOLDER (default ~/syne-tune): keep none.
    scratch = tempfile.TemporaryDirectory(prefix="simulate-scaling-")
    os.environ["SYNETUNE_FOLDER"] = scratch.name
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)

    if args.journal is not None:
        curves, settings = curves_from_journal(args.journal)
        write_csv_atomic(curves, out / CURVES_FILE)
        write_text_atomic(json.dumps(settings, indent=2) + "\n", out / "recorded_settings.json")
    curves = pd.read_csv(out / CURVES_FILE)
    settings = json.loads((out / "recorded_settings.json").read_text())
    epochs = int(settings["epochs"])

    from transformers import AutoConfig

    from nasprune.spaces import get_search_space
    from nasprune.subnet import ModelShape

    from nasprune.session import default_model

    # The recorded path of the offline default model is another machine's: its shape is the same.
    model = settings["model"] if Path(settings["model"]).exists() else default_model()
    shape = ModelShape.from_config(AutoConfig.from_pretrained(model))
    space = get_search_space(settings["search_space"], shape)
    blackbox = recorded_blackbox(curves, space.config_space, epochs)
    trial_seconds = float(curves.groupby("trial_id")["worker_seconds"].max().mean())
    max_time = args.budget_trials * trial_seconds
    print(f"{curves['trial_id'].nunique()} recorded trials of {epochs} epochs, mean {trial_seconds:.0f} s each; "
          f"simulating {max_time:.0f} s for {', '.join(map(str, WORKERS))} workers, {args.seeds} seeds", flush=True)

    traces, runs = [], []
    for method in METHODS:
        for workers in WORKERS:
            for seed in range(args.seeds):
                started = time.perf_counter()
                results = simulate(blackbox, space, method, workers, epochs, max_time, seed)
                trace = hypervolume_trace(results)
                traces.append(trace.assign(method=method, workers=workers, seed=seed))
                runs.append({"method": method, "workers": workers, "seed": seed,
                             "trials": results["trial_id"].nunique(), "epochs_trained": len(results),
                             "hypervolume": hypervolume_at(trace, max_time),
                             "real_seconds": time.perf_counter() - started})
                print(f"{method:7s} {workers:3d} workers, seed {seed}: {runs[-1]['trials']:5d} trials, "
                      f"hypervolume {runs[-1]['hypervolume']:.4f}", flush=True)
    trace_table = pd.concat(traces, ignore_index=True)
    write_csv_atomic(trace_table, out / "hypervolume_over_time.csv")
    write_csv_atomic(pd.DataFrame(runs), out / "runs.csv")
    table = scaling_table(trace_table, pd.DataFrame(runs), max_time)
    write_csv_atomic(table, out / "scaling.csv")
    plot(trace_table, max_time, out / "hypervolume_over_time.png")
    recorded_front = analysis.hypervolume(
        curves[METRICS].to_numpy(), analysis.reference_point(len(METRICS)))
    markdown = analysis.markdown_table(table, float_format="{:.3g}")
    write_text_atomic(markdown, out / "scaling.md")
    print(f"\n{markdown}\nhypervolume of every recorded epoch together (the ceiling): {recorded_front:.4f}")


def scaling_table(traces: pd.DataFrame, runs: pd.DataFrame, max_time: float) -> pd.DataFrame:
    """Per method and number of workers, medians over seeds: hypervolume at 1/16, 1/4 and all of
    the budget; trials started; the simulated time to reach the hypervolume one NSGA-II worker
    reaches in the whole budget, and the speed-up over one worker of the same method."""
    rows = []
    target = runs[(runs["method"] == "nsga2") & (runs["workers"] == 1)]["hypervolume"].median()
    for (method, workers), group in traces.groupby(["method", "workers"], sort=False):
        per_seed = [g for _, g in group.groupby("seed")]
        row = {"method": method, "workers": workers}
        for share, label in ((1 / 16, "hv @ 1/16"), (1 / 4, "hv @ 1/4"), (1.0, "hv @ budget")):
            row[label] = float(np.median([hypervolume_at(t, share * max_time) for t in per_seed]))
        row["trials"] = float(runs[(runs["method"] == method) & (runs["workers"] == workers)]["trials"].median())
        row["time to target (s)"] = float(np.median([time_to(t, target) for t in per_seed]))
        rows.append(row)
    table = pd.DataFrame(rows)
    one = table[table["workers"] == 1].set_index("method")["time to target (s)"]
    table["speed-up vs 1 worker"] = one.loc[table["method"]].to_numpy() / table["time to target (s)"]
    return table


def plot(traces: pd.DataFrame, max_time: float, path: Path) -> None:
    figure = analysis.new_figure(width=7.5, height=4.5)
    axes = figure.add_subplot(1, 1, 1)
    colours = dict(zip(WORKERS, ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]))
    grid = np.geomspace(max_time / 1000, max_time, 200)
    for (method, workers), group in traces.groupby(["method", "workers"], sort=False):
        curves = np.array([[hypervolume_at(t, s) for s in grid] for _, t in group.groupby("seed")])
        axes.plot(grid, np.median(curves, axis=0), color=colours[workers],
                  linestyle="-" if method == "moasha" else "--", label=f"{method}, {workers} workers")
    axes.set_xscale("log")
    axes.set_xlabel("simulated wall time (s)")
    axes.set_ylabel("hypervolume (error × relative params)")
    axes.set_title("Standard NAS replayed from recorded curves (median of seeds)")
    axes.legend(fontsize=7, ncol=2)
    save_figure_atomic(figure, path)


if __name__ == "__main__":
    main()
