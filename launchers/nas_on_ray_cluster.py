"""Standard NAS on a Ray cluster: each candidate sub-network is fine-tuned as a Ray task.

Start the cluster first (``ray start --head`` on one node, ``ray start --address HEAD_IP:6379`` on
the others; every node needs this Python environment and must reach MODEL, the data and
STORAGE), then run this on a node of the cluster. Copy the file and edit the settings below.

    python launchers/nas_on_ray_cluster.py --output-dir snas-ray
    python launchers/nas_on_ray_cluster.py --own-scheduler     # a Syne Tune scheduler of your own

Results land in --output-dir on this machine; trial checkpoints in STORAGE. Killed? Run the same
command again: finished trials are not run again, unfinished ones resume from their checkpoints.
"""

import argparse
from pathlib import Path

from nasprune.cli.nas import print_summary
from nasprune.data import DataOptions
from nasprune.snas import STANDARD_NAS_METHODS, run_standard_nas

MODEL = None  # a HF hub name, or a path every node can read; None: the offline MiniLM-L6
DATA = DataOptions(task="rotten_tomatoes", max_seq_length=64, max_train_samples=2000,
                   max_eval_samples=500, max_test_samples=500, seed=0)
RAY_ADDRESS = "auto"  # the cluster this machine joined; or "HEAD_IP:6379"; None: start Ray here
STORAGE = None  # checkpoints: "/shared/nas" (a folder every node mounts) or "s3://bucket/nas"
GPUS_PER_TRIAL = None  # None: 1 where the cluster has GPUs, else 0; 0.5 shares a GPU by two trials
CPUS_PER_TRIAL = None  # None: 1


def own_scheduler(output_dir: str, max_wallclock_time: float) -> None:
    """Any Syne Tune scheduler on the Ray backend: here Syne Tune's ASHA on the validation error
    alone. The config space is the search space's variables plus the fixed settings each trial
    reads (see ``python -m nasprune.snas.worker --help``)."""
    import os

    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.constants import SYNE_TUNE_ENV_FOLDER
    from syne_tune.optimizer.baselines import ASHA
    from transformers import AutoConfig

    from nasprune.session import default_model
    from nasprune.snas import ray_backend
    from nasprune.spaces import get_search_space
    from nasprune.subnet import ModelShape

    model = MODEL or default_model()
    space = get_search_space("small", ModelShape.from_config(AutoConfig.from_pretrained(model)))
    fixed = {"model": model, "task": DATA.task, "max_seq_length": DATA.max_seq_length,
             "max_train_samples": DATA.max_train_samples, "max_eval_samples": DATA.max_eval_samples,
             "max_test_samples": DATA.max_test_samples, "search_space": space.name, "epochs": 3,
             "learning_rate": 1e-4, "seed": 0, "num_threads": 1}
    config_space = {**space.config_space, **fixed}
    ray_backend.connect(RAY_ADDRESS)
    resources = ray_backend.TrialResources(CPUS_PER_TRIAL or 1, GPUS_PER_TRIAL or 0)
    os.environ[SYNE_TUNE_ENV_FOLDER] = str(Path(output_dir).resolve())  # Syne Tune's results
    backend = ray_backend.RayTrialBackend(STORAGE, resources, delete_checkpoints=True)
    tuner = Tuner(
        trial_backend=backend,
        scheduler=ASHA(config_space, metric="valid_error", time_attr="epoch", max_t=fixed["epochs"], random_seed=0),
        stop_criterion=StoppingCriterion(max_wallclock_time=max_wallclock_time),
        n_workers=4,
    )
    tuner.run()
    backend.close()
    results = tuner.callbacks[0].dataframe().groupby("trial_id").last()
    print(results.sort_values("valid_error")[["valid_error", "relative_params", "epoch"]].head(10).to_string())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="moasha", choices=STANDARD_NAS_METHODS)
    parser.add_argument("--max-wallclock-time", type=float, default=3600, help="seconds")
    parser.add_argument("--output-dir", default="snas-ray")
    parser.add_argument("--own-scheduler", action="store_true", help="Syne Tune's ASHA instead of --method")
    args = parser.parse_args()

    if args.own_scheduler:
        own_scheduler(args.output_dir, args.max_wallclock_time)
    else:
        result = run_standard_nas(
            MODEL, DATA, args.output_dir, method=args.method, max_wallclock_time=args.max_wallclock_time,
            epochs=3, learning_rate=1e-4, seed=0,
            backend="ray", ray_address=RAY_ADDRESS, storage=STORAGE,
            cpus_per_trial=CPUS_PER_TRIAL, gpus_per_trial=GPUS_PER_TRIAL,
        )
        print_summary(result)
