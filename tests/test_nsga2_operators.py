"""NSGA-II takes its variation operators as constructor arguments (pymoo style)."""

import numpy as np
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM

from nasprune.search import NSGA2, PymooCrossover, PymooMutation, default_operators
from nasprune.spaces import get_search_space
from nasprune.subnet import ModelShape

SHAPE = ModelShape(num_layers=4, num_heads=4, head_dim=4, hidden_size=16, intermediate_size=32)


def _suggestions(searcher, space, n=40):
    configs = []
    for trial_id in range(n):
        config = searcher.suggest()
        subnet = space.to_subnet(config)
        searcher.on_trial_complete(trial_id, config, [float(subnet.head_mask.sum()), -float(subnet.unit_mask.sum())])
        configs.append(config)
    return configs


def test_explicit_default_operators_give_the_default_search():
    space = get_search_space("medium", SHAPE)
    crossover, mutation = default_operators(binary=False)
    given = NSGA2(space.config_space, population_size=4, random_seed=1, crossover=crossover, mutation=mutation)
    default = NSGA2(space.config_space, population_size=4, random_seed=1)
    assert _suggestions(given, space) == _suggestions(default, space)


def test_operators_are_called_with_free_coordinates_and_the_searcher_rng():
    space = get_search_space("small", SHAPE)
    calls = []

    class Recording:
        def __init__(self, operator):
            self.operator = operator

        def __call__(self, genes, lower, upper, rng):
            calls.append((type(self.operator).__name__, genes.shape, rng))
            assert np.all(lower <= genes) and np.all(genes <= upper)
            return self.operator(genes, lower, upper, rng)

    searcher = NSGA2(
        space.config_space, population_size=4, random_seed=0,
        crossover=Recording(PymooCrossover(SBX(prob=1.0, eta=5.0))), mutation=Recording(PymooMutation(PM(eta=5.0))),
    )
    configs = _suggestions(searcher, space)
    assert all(space.to_subnet(config) is not None for config in configs)
    assert {name for name, _, _ in calls} == {"PymooCrossover", "PymooMutation"}
    assert all(rng is searcher.rng for _, _, rng in calls)
    free = int(searcher.encoder.free.sum())
    assert {shape for name, shape, _ in calls if name == "PymooCrossover"} == {(2, free)}
