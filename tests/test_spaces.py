import time

import numpy as np
import pytest

from nasprune.errors import NaspruneError
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import ModelShape, SubNetwork

TINY = ModelShape(num_layers=4, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=64)
ODD = ModelShape(num_layers=3, num_heads=6, head_dim=4, hidden_size=24, intermediate_size=10)


@pytest.mark.parametrize("name", list(SEARCH_SPACES))
@pytest.mark.parametrize("shape", [TINY, ODD])
def test_round_trip_and_special_points(name, shape):
    space = get_search_space(name, shape)
    assert set(space.config_space) == set(space.variable_names)
    largest, smallest = space.to_subnet(space.largest()), space.to_subnet(space.smallest())
    assert largest == SubNetwork.full(shape)
    assert smallest.heads_per_layer.sum() <= largest.heads_per_layer.sum()
    rng = np.random.default_rng(0)
    for config in space.initial_design() + [space.sample(rng) for _ in range(20)]:
        subnet = space.to_subnet(config)
        assert subnet.head_mask.shape == (shape.num_layers, shape.num_heads)
        assert space.to_subnet(space.from_subnet(subnet)) == subnet


def test_small_space_semantics():
    space = get_search_space("small", TINY)
    subnet = space.to_subnet({"num_layers": 2, "num_heads": 3, "num_units": 10})
    assert subnet.heads_per_layer.tolist() == [3, 3, 0, 0]
    assert subnet.units_per_layer.tolist() == [10, 10, 0, 0]
    assert subnet.head_mask[0].tolist() == [True, True, True, False]
    assert space.to_subnet(space.smallest()).kept_layers == []


def test_midpoint_respects_lower_bounds():
    space = get_search_space("small", TINY)
    # num_heads lives in [1, 4] and num_units in [1, 64]: the middles are 2 and 32, not 2 and 32 of [0, n]
    assert space.midpoint() == {"num_layers": 2, "num_heads": 2, "num_units": 32}
    odd = get_search_space("small", ODD)
    assert odd.midpoint() == {"num_layers": 1, "num_heads": 3, "num_units": 5}
    assert len(get_search_space("medium", TINY).initial_design()) == 3


def test_pow2_space_has_powers_of_two_and_the_full_count():
    space = get_search_space("small_pow2", ODD)
    assert space.head_counts.tolist() == [1, 2, 4, 6]
    heads = {space.to_subnet(space.sample(np.random.default_rng(i))).heads_per_layer.max() for i in range(50)}
    assert heads <= {0, 1, 2, 4, 6}
    with pytest.raises(NaspruneError, match="num_heads=3"):
        space.to_subnet({"num_layers": 1, "num_heads": 3, "num_units": 2})


def test_medium_and_layer_and_large_semantics():
    medium = get_search_space("medium", TINY)
    config = {**{f"num_heads_{i}": i for i in range(4)}, **{f"num_units_{i}": 2 * i for i in range(4)}}
    subnet = medium.to_subnet(config)
    assert subnet.heads_per_layer.tolist() == [0, 1, 2, 3]
    assert subnet.units_per_layer.tolist() == [0, 2, 4, 6]
    assert subnet.kept_layers == [1, 2, 3]

    layer = get_search_space("layer", TINY)
    subnet = layer.to_subnet({"layer_0": 1, "layer_1": 0, "layer_2": 1, "layer_3": 0})
    assert subnet.kept_layers == [0, 2]
    assert subnet.heads_per_layer.tolist() == [4, 0, 4, 0]

    large = get_search_space("large", TINY)
    config = dict.fromkeys(large.variable_names, 0)
    config["head_2_3"] = 1
    config["unit_1_5"] = 1
    subnet = large.to_subnet(config)
    assert np.argwhere(subnet.head_mask).tolist() == [[2, 3]]
    assert np.argwhere(subnet.unit_mask).tolist() == [[1, 5]]
    assert not subnet.is_prefix


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_layers": 5, "num_heads": 1, "num_units": 1}, "num_layers=5"),
        ({"num_layers": 1, "num_heads": 0, "num_units": 1}, "num_heads=0"),
        ({"num_layers": 1, "num_heads": 1}, "missing num_units"),
        ({"num_layers": 1.5, "num_heads": 1, "num_units": 1}, "integers"),
        ({"num_layers": "x", "num_heads": 1, "num_units": 1}, "outside"),
    ],
)
def test_config_outside_the_space_is_a_clear_error(config, message):
    with pytest.raises(NaspruneError, match=message):
        get_search_space("small", TINY).to_subnet(config)


def test_unknown_space_and_inexpressible_subnet():
    with pytest.raises(NaspruneError, match="unknown search space 'huge'"):
        get_search_space("huge", TINY)
    per_layer = SubNetwork.from_counts(TINY, [4, 2, 0, 0], [64, 64, 0, 0])
    with pytest.raises(NaspruneError, match="cannot be expressed"):
        get_search_space("small", TINY).from_subnet(per_layer)


def test_large_space_at_bert_base_size_is_built_once_and_fast():
    bert_base = ModelShape(12, 12, 64, 768, 3072)
    space = get_search_space("large", bert_base)
    assert space.num_variables == 37_008
    assert get_search_space("large", bert_base) is space
    assert space.config_space is space.config_space
    config = space.sample(np.random.default_rng(0))
    start = time.perf_counter()
    for _ in range(10):
        subnet = space.to_subnet(config)
    assert subnet.unit_mask.shape == (12, 3072)
    assert time.perf_counter() - start < 5.0  # a generous bound: a slow path takes minutes


def test_subnetwork_identity_and_serialisation():
    a = SubNetwork.from_counts(TINY, [4, 2, 0, 1], [64, 3, 0, 0])
    b = SubNetwork.from_counts(TINY, [4, 2, 0, 1], [64, 3, 0, 0])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert SubNetwork.from_dict(a.to_dict()) == a
    scattered = SubNetwork(np.eye(4, dtype=bool), np.zeros((4, 64), bool))
    assert "heads" in scattered.to_dict()
    assert SubNetwork.from_dict(scattered.to_dict()) == scattered
    with pytest.raises(AttributeError):
        a.head_mask = None
    with pytest.raises(ValueError):
        a.head_mask[0, 0] = False
