"""Weight-sharing NAS: fine-tune a super-network once, then search its sub-networks in seconds.

Stage 1 trains the whole model so that every sub-network works with the shared weights (the
sandwich rule with in-place distillation by default). Stage 2 evaluates candidates with those
weights, one pass over the validation split each, and scores the Pareto set on the test split
(Klein et al. 2024, "Structural Pruning of Pre-trained Language Models via NAS", §5).

    python launchers/supernet_then_search.py --method nsga2 --output-dir ws-output
"""

import argparse
from pathlib import Path

from nasprune.cli.summary import print_search_summary
from nasprune.data import DataOptions
from nasprune.rewiring import RewiringOptions
from nasprune.search import METHODS
from nasprune.training import TrainingConfig
from nasprune.workflows import SearchOptions, search, train_supernet

MODEL = None  # a HF name or path of a supported family (README: Model families); None: the offline MiniLM-L6
DATA = DataOptions(task="rotten_tomatoes", max_seq_length=64, max_train_samples=6000, max_eval_samples=1000)
SEARCH_SPACE = "small"  # small, small_pow2, medium, layer or large
TRAINING = TrainingConfig(epochs=1, learning_rate=1e-4, strategy="full")  # full = sandwich + distillation
# Sort heads and units by importance first, so that the first-k spaces keep the best ones:
# RewiringOptions(source="ft-output") measures it on a `nasprune finetune` checkpoint.
REWIRING: RewiringOptions | None = None

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="nsga2", choices=METHODS)
    parser.add_argument("--num-samples", type=int, default=100, help="sub-networks to evaluate")
    parser.add_argument("--output-dir", default="ws-output")
    args = parser.parse_args()

    # Stage 1 resumes from the last finished epoch in its folder when run again.
    checkpoint = train_supernet(MODEL, DATA, TRAINING, SEARCH_SPACE, Path(args.output_dir) / "supernet", rewiring=REWIRING)
    result = search(checkpoint, SearchOptions(method=args.method, num_samples=args.num_samples), args.output_dir)
    print_search_summary(result)
