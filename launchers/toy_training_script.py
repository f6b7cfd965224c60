"""A stand-in for your own training script: it "trains" for a few epochs and reports two objectives.

Syne Tune starts it as ``python toy_training_script.py --width 64 --depth 3 ...`` and reads what it
reports through :class:`syne_tune.Reporter`. Replace the made-up learning curve by real training.
"""

import argparse
import math
import time

from syne_tune import Reporter

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, required=True)
parser.add_argument("--depth", type=int, required=True)
parser.add_argument("--learning_rate", type=float, required=True)
parser.add_argument("--epochs", type=int, default=5)
args, _ = parser.parse_known_args()  # Syne Tune also passes --st_checkpoint_dir

report = Reporter()
capacity = 1 - math.exp(-args.width * args.depth / 300)  # bigger networks can fit better ...
detuning = (math.log10(args.learning_rate) + 2.5) ** 2 / 4  # ... at a well-chosen learning rate
for epoch in range(1, args.epochs + 1):
    time.sleep(0.2)  # the work of one epoch
    error = 0.05 + 0.5 * (1 - capacity) + 0.2 * detuning + 0.3 * math.exp(-epoch)
    # Report errors and costs: Syne Tune's multi-objective schedulers minimise every metric.
    report(epoch=epoch, error=error, cost=args.width * args.depth / 2048)
