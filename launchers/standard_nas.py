"""Standard NAS: fine-tune candidate sub-networks of a pre-trained model as Syne Tune trials.

Each trial cuts one sub-network out of the pre-trained model and fine-tunes it for a few epochs
(Klein et al. 2024, "Structural Pruning of Pre-trained Language Models via NAS", §4). MO-ASHA
stops weak candidates after an epoch; the other methods train every candidate to the end.
Copy this file and edit the settings, or use ``nasprune nas --help``. A search that was killed
continues when the same command is run again; ``--overwrite-output-dir`` starts afresh.

    python launchers/standard_nas.py --method moasha --output-dir snas-output
"""

import argparse

from nasprune.cli.nas import print_summary
from nasprune.data import DataOptions
from nasprune.snas import STANDARD_NAS_METHODS, run_standard_nas

MODEL = None  # a HF name or path of a supported family (README: Model families); None: the offline MiniLM-L6
DATA = DataOptions(
    task="rotten_tomatoes",  # offline; GLUE tasks need the HF hub
    max_seq_length=64,
    max_train_samples=2000,  # caps keep a trial at a few minutes on a CPU
    max_eval_samples=500,
    max_test_samples=500,
    seed=0,  # the split's seed (--data-seed): keep it fixed when comparing training seeds
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="moasha", choices=STANDARD_NAS_METHODS)
    parser.add_argument("--max-wallclock-time", type=float, default=1800, help="seconds")
    parser.add_argument("--output-dir", default="snas-output")
    parser.add_argument("--overwrite-output-dir", action="store_true", help="start afresh")
    args = parser.parse_args()

    result = run_standard_nas(
        MODEL,
        DATA,
        args.output_dir,
        search_space="small",
        method=args.method,
        n_workers=2,  # on a CPU the cores are split between the workers
        max_wallclock_time=args.max_wallclock_time,
        epochs=3,
        learning_rate=1e-4,
        seed=0,  # training and search
        overwrite=args.overwrite_output_dir,
    )
    print_summary(result)
