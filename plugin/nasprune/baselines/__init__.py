"""Pruning baselines that produce sub-networks in the results format of the searches.

- :mod:`~nasprune.baselines.rfp`: retraining-free pruning (Kwon et al. 2022, "A Fast Post-Training
  Pruning Framework for Transformers");
- :mod:`~nasprune.baselines.head_pruning`: iterative head pruning (Michel et al. 2019, "Are Sixteen
  Heads Really Better than One?");
- :mod:`~nasprune.baselines.layer_drop`: dropping the top layers and fine-tuning (Sajjad et al. 2023,
  "On the effect of dropping layers of pre-trained transformer models");
- :mod:`~nasprune.baselines.importance_pruning`: one-shot first-order (Taylor or Fisher) importance
  pruning of heads and units, then fine-tuning;
- :mod:`~nasprune.baselines.reference_model`: a smaller pre-trained model fine-tuned the same way;
- :mod:`~nasprune.baselines.runner`: ``nasprune baseline``, which runs any of them on a checkpoint.

The importance they prune by (per-example mask gradients, Fisher and Michel importance) is core:
:mod:`nasprune.importance`.
"""

from nasprune.baselines.runner import BASELINE_METHODS, BaselineOptions, run_baseline

__all__ = [
    "BASELINE_METHODS",
    "BaselineOptions",
    "run_baseline",
]
