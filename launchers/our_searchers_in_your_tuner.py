"""nasprune's multi-objective searchers (NSGA-II, local search) in a plain Syne Tune ``Tuner``.

They are ordinary Syne Tune searchers: plug them into a ``SingleFidelityScheduler`` and tune any
training script that reports the objectives, here ``toy_training_script.py`` (error and cost,
both minimised). They cope with asynchronous workers: suggestions while trials still run,
results in any order, failed or stopped trials.

    python launchers/our_searchers_in_your_tuner.py --searcher nsga2
"""

import argparse
from pathlib import Path

from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend import LocalBackend
from syne_tune.config_space import loguniform, randint
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nasprune.analysis import pareto_mask
from nasprune.search import NSGA2, LocalSearch

config_space = {
    "width": randint(8, 256),
    "depth": randint(1, 8),
    "learning_rate": loguniform(1e-4, 1e-1),
    "epochs": 5,  # a constant: passed to every trial, not searched
}
# Start from the extremes and the middle, as nasprune's methods do.
initial_design = [
    {"width": 256, "depth": 8, "learning_rate": 3e-3},
    {"width": 8, "depth": 1, "learning_rate": 3e-3},
    {"width": 132, "depth": 4, "learning_rate": 3e-3},
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searcher", default="nsga2", choices=["nsga2", "local_search"])
    parser.add_argument("--max-wallclock-time", type=float, default=60, help="seconds")
    args = parser.parse_args()

    if args.searcher == "nsga2":
        searcher = NSGA2(config_space, points_to_evaluate=initial_design, population_size=10, random_seed=0)
    else:
        searcher = LocalSearch(config_space, points_to_evaluate=initial_design, random_seed=0)
    scheduler = SingleFidelityScheduler(
        config_space, metrics=["error", "cost"], do_minimize=True, searcher=searcher, random_seed=0
    )
    tuner = Tuner(
        trial_backend=LocalBackend(entry_point=str(Path(__file__).with_name("toy_training_script.py"))),
        scheduler=scheduler,
        stop_criterion=StoppingCriterion(max_wallclock_time=args.max_wallclock_time),
        n_workers=2,
    )
    tuner.run()

    # The searcher learns from each trial's last report; so does the front printed here.
    results = tuner.callbacks[0].dataframe().groupby("trial_id").last()
    front = results[pareto_mask(results[["error", "cost"]].to_numpy())].sort_values("cost")
    print(front[["error", "cost", "config_width", "config_depth", "config_learning_rate"]].to_string())
