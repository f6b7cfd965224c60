"""Super-network training strategies: which sub-networks one optimizer step trains, and how.

Each step sums the gradients of every sub-network a strategy plans, then takes one
optimizer step. A plan is a list of :class:`TrainingTask`; when a plan distils, its first
task is the full network trained on the labels, whose detached logits are the teacher.

References: Yu et al. 2019/2020 (sandwich rule, in-place distillation, BigNAS); Klein et al.
2024, "Structural Pruning of Pre-trained Language Models via NAS", §5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasprune.errors import NaspruneError
from nasprune.spaces import SearchSpace
from nasprune.subnet import SubNetwork

LABELS, DISTILL = "labels", "distill"


@dataclass(frozen=True)
class TrainingTask:
    """Train ``subnet`` on the labels (``LABELS``) or by distillation from the full network."""

    subnet: SubNetwork
    loss: str = LABELS


class Strategy:
    """Plans the sub-networks of one training step."""

    name = ""
    distills = False

    def __init__(self, space: SearchSpace, num_random_subnets: int = 2):
        if num_random_subnets < 0:
            raise NaspruneError("the number of random sub-networks must be >= 0")
        self.space = space
        self.num_random_subnets = num_random_subnets
        self.largest = space.to_subnet(space.largest())
        self.smallest = space.to_subnet(space.smallest())

    def random_subnets(self, rng: np.random.Generator) -> list[SubNetwork]:
        """``num_random_subnets`` sub-networks drawn uniformly from the search space."""
        return [self.space.vector_to_subnet(self.space.sample_vector(rng)) for _ in range(self.num_random_subnets)]

    def plan(self, step: int, total_steps: int, rng: np.random.Generator) -> list[TrainingTask]:
        """The sub-networks to train at ``step`` of ``total_steps``, and the loss of each."""
        raise NotImplementedError


class StandardStrategy(Strategy):
    """Plain fine-tuning of the full network."""

    name = "standard"

    def plan(self, step, total_steps, rng):
        return [TrainingTask(self.largest)]


class RandomStrategy(Strategy):
    """k random sub-networks, each on the labels."""

    name = "random"

    def plan(self, step, total_steps, rng):
        return [TrainingTask(s) for s in self.random_subnets(rng)]


class RandomLinearStrategy(Strategy):
    """With probability p (rising linearly from 0 to 1) k random sub-networks, else the full network."""

    name = "random_linear"

    def plan(self, step, total_steps, rng):
        p = step / max(total_steps - 1, 1)
        if rng.random() < p:
            return [TrainingTask(s) for s in self.random_subnets(rng)]
        return [TrainingTask(self.largest)]


class SandwichStrategy(Strategy):
    """The largest, the smallest and k random sub-networks, all on the labels."""

    name = "sandwich"

    def plan(self, step, total_steps, rng):
        subnets = [self.largest, self.smallest, *self.random_subnets(rng)]
        return [TrainingTask(s) for s in subnets]


class KDStrategy(Strategy):
    """The full network on the labels; k random sub-networks distil from its detached logits."""

    name = "kd"
    distills = True

    def plan(self, step, total_steps, rng):
        return [TrainingTask(self.largest)] + [
            TrainingTask(s, DISTILL) for s in self.random_subnets(rng)
        ]


class FullStrategy(Strategy):
    """Sandwich rule with in-place distillation: the largest learns from the labels, the rest distil.

    The recommended default.
    """

    name = "full"
    distills = True

    def plan(self, step, total_steps, rng):
        return [TrainingTask(self.largest), TrainingTask(self.smallest, DISTILL)] + [
            TrainingTask(s, DISTILL) for s in self.random_subnets(rng)
        ]


class FixedSubnetStrategy(Strategy):
    """Every step trains one fixed sub-network on the labels: plain fine-tuning of a pruned model
    (standard NAS trials, layer dropping). Not a super-network strategy, so not in ``STRATEGIES``."""

    name = "fixed"

    def __init__(self, subnet: SubNetwork):
        # No search space: the Trainer only needs plan(), largest and smallest.
        self.space = None
        self.num_random_subnets = 0
        self.largest = self.smallest = subnet

    def plan(self, step, total_steps, rng):
        return [TrainingTask(self.largest)]


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        StandardStrategy,
        RandomStrategy,
        RandomLinearStrategy,
        SandwichStrategy,
        KDStrategy,
        FullStrategy,
    )
}


def get_strategy(name: str, space: SearchSpace, num_random_subnets: int = 2) -> Strategy:
    """The strategy registered as ``name`` in :data:`STRATEGIES`, over ``space``."""
    if name not in STRATEGIES:
        raise NaspruneError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, num_random_subnets)
