"""Search spaces: Syne Tune config spaces over sub-networks.

Every space is a box of integer variables. A config (a dict, as Syne Tune passes it) maps
to a vector of value *indices* in ``[lower, upper]`` (what evolutionary operators work on),
and the vector maps to a :class:`~nasprune.subnet.SubNetwork`. The spaces follow Klein et
al. (2024), "Structural Pruning of Pre-trained Language Models via NAS", §4:

========== ============================================================ ===============
name       variables                                                    count
========== ============================================================ ===============
small      num_layers in [0,L], num_heads in [1,H], num_units in [1,I]  3
small_pow2 as small, with num_heads a power of two (or H itself)        3
medium     num_heads_i in [0,H], num_units_i in [0,I] per layer          2L
layer      one keep bit per layer                                       L
large      one keep bit per head and per FFN unit                       L(H+I)
========== ============================================================ ===============

"first k" spaces keep the first heads and units in the model's unit order.

On models with grouped-query attention (``shape.grouped``: key/value heads shared by groups of
``G = shape.group_size`` query heads) every space yields only valid sub-networks (each key/value
group keeps none of its query heads or as many as every other non-empty group):

========== ============================================================ ===============
name       variables on a GQA shape (KV key/value groups of G heads)     count
========== ============================================================ ===============
small      num_layers, num_kv_groups in [1,KV], heads_per_group in       4
           [1,G], num_units: the first groups, their first heads
small_pow2 as small, with num_kv_groups and heads_per_group powers of    4
           two (or KV, G themselves)
medium     num_kv_groups_i in [0,KV], heads_per_group_i in [1,G],        3L
           num_units_i per layer
layer      one keep bit per layer (unchanged)                           L
large      one bit per group (group_<l>_<g>), one bit per position in    L(KV+G+I)
           a group (head_<l>_<j>: head j of every kept group), one bit
           per unit
========== ============================================================ ===============

So every space but ``layer`` prunes both whole groups (their K/V rows go too) and query heads
within the kept groups, the same ones in every group. Without GQA the spaces are those above.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from syne_tune.config_space import Domain, ordinal, randint

from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork

Config = dict[str, Any]


class SearchSpace:
    """Base class: a box of integer variables over sub-networks of a model of ``shape``.

    Subclasses set ``variable_names``, ``lower`` and ``upper`` (index bounds) and
    implement :meth:`vector_to_subnet` and :meth:`subnet_to_vector`. Variables whose
    values are not their indices (powers of two) override :meth:`_index_to_value` and
    :meth:`_value_to_index`.
    """

    name: str = ""

    def __init__(self, shape: ModelShape):
        self.shape = shape
        self.variable_names: list[str] = []
        self.lower = np.zeros(0, dtype=np.int64)
        self.upper = np.zeros(0, dtype=np.int64)

    # --- Syne Tune ----------------------------------------------------------------------
    @functools.cached_property
    def config_space(self) -> dict[str, Domain]:
        """The Syne Tune config space, built once per search space object."""
        return {
            name: self._domain(i) for i, name in enumerate(self.variable_names)
        }

    def _domain(self, i: int) -> Domain:
        return randint(int(self.lower[i]), int(self.upper[i]))

    @property
    def num_variables(self) -> int:
        return len(self.variable_names)

    # --- config <-> vector --------------------------------------------------------------
    @functools.cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.variable_names)

    def config_to_vector(self, config: Config) -> np.ndarray:
        """Index vector of a config; raises :class:`NaspruneError` if it is outside the space."""
        missing = [n for n in self.variable_names if n not in config]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NaspruneError(f"config is outside the '{self.name}' space: missing {shown}")
        try:
            values = np.array([config[n] for n in self.variable_names], dtype=float)
        except (TypeError, ValueError) as err:
            raise NaspruneError(f"config is outside the '{self.name}' space: {err}") from None
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise NaspruneError(f"config is outside the '{self.name}' space: values must be integers")
        vector = self._value_to_index(values.astype(np.int64))
        bad = np.flatnonzero((vector < self.lower) | (vector > self.upper))
        if bad.size:
            i = int(bad[0])
            name = self.variable_names[i]
            raise NaspruneError(
                f"config is outside the '{self.name}' space: {name}={config[name]} "
                f"is not one of {self._describe_domain(i)}"
            )
        return vector

    def vector_to_config(self, vector: np.ndarray) -> Config:
        values = self._index_to_value(np.asarray(vector, dtype=np.int64))
        return {n: int(v) for n, v in zip(self.variable_names, values)}

    def _index_to_value(self, vector: np.ndarray) -> np.ndarray:
        return vector

    def _value_to_index(self, values: np.ndarray) -> np.ndarray:
        return values

    def _describe_domain(self, i: int) -> str:
        return f"[{self.lower[i]}, {self.upper[i]}]"

    # --- config <-> sub-network ---------------------------------------------------------
    def to_subnet(self, config: Config) -> SubNetwork:
        """The sub-network a config stands for."""
        return self.vector_to_subnet(self.config_to_vector(config))

    def from_subnet(self, subnet: SubNetwork) -> Config:
        """The config of a sub-network; raises :class:`NaspruneError` if the space cannot express it."""
        self.shape.check(subnet)
        vector = self.subnet_to_vector(subnet)
        if self.vector_to_subnet(vector) != subnet:
            raise NaspruneError(f"{subnet} cannot be expressed in the '{self.name}' space")
        return self.vector_to_config(vector)

    def vector_to_subnet(self, vector: np.ndarray) -> SubNetwork:
        raise NotImplementedError

    def subnet_to_vector(self, subnet: SubNetwork) -> np.ndarray:
        raise NotImplementedError

    # --- special points -----------------------------------------------------------------
    def largest(self) -> Config:
        return self.vector_to_config(self.upper)

    def smallest(self) -> Config:
        return self.vector_to_config(self.lower)

    def midpoint(self) -> Config:
        """Halfway between the bounds, lower bounds included."""
        return self.vector_to_config(self.lower + (self.upper - self.lower) // 2)

    def initial_design(self) -> list[Config]:
        """Largest, smallest and midpoint (without duplicates): every method starts here."""
        design: list[Config] = []
        for config in (self.largest(), self.smallest(), self.midpoint()):
            if config not in design:
                design.append(config)
        return design

    def sample_vector(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.lower, self.upper + 1)

    def sample(self, rng: np.random.Generator) -> Config:
        return self.vector_to_config(self.sample_vector(rng))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_variables} variables, {self.shape})"


class SmallSearchSpace(SearchSpace):
    """The first ``num_layers`` layers, each with its first ``num_heads`` heads and ``num_units`` units."""

    name = "small"

    def __init__(self, shape: ModelShape):
        super().__init__(shape)
        if shape.grouped:
            self.variable_names = ["num_layers", "num_kv_groups", "heads_per_group", "num_units"]
            self.lower = np.array([0, 1, 1, 1], dtype=np.int64)
            self.upper = np.array(
                [shape.num_layers, shape.kv_heads, shape.group_size, shape.intermediate_size], dtype=np.int64
            )
            return
        self.variable_names = ["num_layers", "num_heads", "num_units"]
        self.lower = np.array([0, 1, 1], dtype=np.int64)
        self.upper = np.array(
            [shape.num_layers, shape.num_heads, shape.intermediate_size], dtype=np.int64
        )

    def vector_to_subnet(self, vector: np.ndarray) -> SubNetwork:
        values = self._index_to_value(np.asarray(vector, dtype=np.int64)).astype(int)
        kept = np.arange(self.shape.num_layers) < values[0]
        if self.shape.grouped:
            groups, per_group, units = values[1:]
            return SubNetwork.from_group_counts(self.shape, kept * groups, kept * per_group, kept * units)
        return SubNetwork.from_counts(self.shape, kept * values[1], kept * values[2])

    def subnet_to_vector(self, subnet: SubNetwork) -> np.ndarray:
        layers = len(subnet.kept_layers)
        units = int(subnet.units_per_layer.max()) if layers else 1
        if self.shape.grouped:
            counts = self.shape.group_head_counts(subnet.head_mask)
            groups = max(int((counts > 0).sum(axis=1).max()), 1)
            per_group = max(int(counts.max()), 1)
            values = [layers, groups, per_group, units]
        else:
            values = [layers, int(subnet.heads_per_layer.max()) if layers else 1, units]
        return self._value_to_index(np.array(values, dtype=np.int64))


def _powers_of_two(limit: int) -> np.ndarray:
    """1, 2, 4, ... up to ``limit``, and ``limit`` itself (keeps the unpruned model in the space)."""
    counts = [2**k for k in range(int(np.log2(limit)) + 1)]
    if counts[-1] != limit:
        counts.append(limit)
    return np.array(counts, dtype=np.int64)


class SmallPowerOfTwoSearchSpace(SmallSearchSpace):
    """As :class:`SmallSearchSpace`, with the head count a power of two, or all ``H`` heads (under
    GQA: the group count and the heads per group, each a power of two or its maximum)."""

    name = "small_pow2"

    def __init__(self, shape: ModelShape):
        super().__init__(shape)
        if shape.grouped:
            self.value_sets = {1: _powers_of_two(shape.kv_heads), 2: _powers_of_two(shape.group_size)}
        else:
            self.value_sets = {1: _powers_of_two(shape.num_heads)}
        self.head_counts = self.value_sets[1]
        for i, values in self.value_sets.items():
            self.lower[i], self.upper[i] = 0, len(values) - 1

    def _domain(self, i: int) -> Domain:
        if i in self.value_sets:
            return ordinal(self.value_sets[i].tolist())
        return super()._domain(i)

    def _index_to_value(self, vector: np.ndarray) -> np.ndarray:
        values = vector.copy()
        for i, counts in self.value_sets.items():
            values[i] = counts[np.clip(vector[i], 0, len(counts) - 1)]
        return values

    def _value_to_index(self, values: np.ndarray) -> np.ndarray:
        vector = values.copy()
        for i, counts in self.value_sets.items():
            where = np.flatnonzero(counts == values[i])
            vector[i] = where[0] if where.size else -1  # -1 is out of bounds, reported as such
        return vector

    def _describe_domain(self, i: int) -> str:
        if i in self.value_sets:
            return str(self.value_sets[i].tolist())
        return super()._describe_domain(i)


class MediumSearchSpace(SearchSpace):
    """Per-layer head and unit counts, first-k order; 0 skips the block. Under GQA a layer's heads
    are two counts: its first ``num_kv_groups_i`` groups, each with its first ``heads_per_group_i``."""

    name = "medium"

    def __init__(self, shape: ModelShape):
        super().__init__(shape)
        num_layers = shape.num_layers
        layers = range(num_layers)
        if shape.grouped:
            self.variable_names = (
                [f"num_kv_groups_{i}" for i in layers]
                + [f"heads_per_group_{i}" for i in layers]
                + [f"num_units_{i}" for i in layers]
            )
            self.lower = np.array([0] * num_layers + [1] * num_layers + [0] * num_layers, dtype=np.int64)
            self.upper = np.array(
                [shape.kv_heads] * num_layers + [shape.group_size] * num_layers
                + [shape.intermediate_size] * num_layers,
                dtype=np.int64,
            )
            return
        self.variable_names = [f"num_heads_{i}" for i in layers] + [f"num_units_{i}" for i in layers]
        self.lower = np.zeros(2 * num_layers, dtype=np.int64)
        self.upper = np.array(
            [shape.num_heads] * num_layers + [shape.intermediate_size] * num_layers, dtype=np.int64
        )

    def vector_to_subnet(self, vector: np.ndarray) -> SubNetwork:
        num_layers = self.shape.num_layers
        vector = np.asarray(vector, dtype=np.int64)
        if self.shape.grouped:
            groups, per_group, units = vector.reshape(3, num_layers)
            return SubNetwork.from_group_counts(self.shape, groups, per_group, units)
        return SubNetwork.from_counts(self.shape, vector[:num_layers], vector[num_layers:])

    def subnet_to_vector(self, subnet: SubNetwork) -> np.ndarray:
        if self.shape.grouped:
            counts = self.shape.group_head_counts(subnet.head_mask)
            groups = (counts > 0).sum(axis=1)
            per_group = np.maximum(counts.max(axis=1), 1)
            return np.concatenate([groups, per_group, subnet.units_per_layer]).astype(np.int64)
        return np.concatenate([subnet.heads_per_layer, subnet.units_per_layer]).astype(np.int64)


class LayerSearchSpace(SearchSpace):
    """One keep bit per layer; kept layers stay whole."""

    name = "layer"

    def __init__(self, shape: ModelShape):
        super().__init__(shape)
        self.variable_names = [f"layer_{i}" for i in range(shape.num_layers)]
        self.lower = np.zeros(shape.num_layers, dtype=np.int64)
        self.upper = np.ones(shape.num_layers, dtype=np.int64)

    def vector_to_subnet(self, vector: np.ndarray) -> SubNetwork:
        kept = np.asarray(vector, dtype=bool)
        return SubNetwork.from_counts(
            self.shape, kept * self.shape.num_heads, kept * self.shape.intermediate_size
        )

    def subnet_to_vector(self, subnet: SubNetwork) -> np.ndarray:
        return (subnet.head_mask.any(axis=1) | subnet.unit_mask.any(axis=1)).astype(np.int64)

    def midpoint(self) -> Config:
        """Bits have no middle value: keep the first half of the layers instead."""
        kept = np.arange(self.shape.num_layers) < (self.shape.num_layers + 1) // 2
        return self.vector_to_config(kept.astype(np.int64))


class LargeSearchSpace(SearchSpace):
    """One keep bit per head (``head_<layer>_<head>``) and per FFN unit (``unit_<layer>_<unit>``).

    BERT-base has 37,008 variables; names and bounds are built once and masks are built
    with one vectorised reshape.
    """

    name = "large"

    def __init__(self, shape: ModelShape):
        super().__init__(shape)
        num_layers, heads, units = shape.num_layers, shape.num_heads, shape.intermediate_size
        group_names = []
        if shape.grouped:
            # Under GQA: a bit per group, and a bit per position in a group (shared by the groups).
            group_names = [f"group_{i}_{g}" for i in range(num_layers) for g in range(shape.kv_heads)]
            heads = shape.group_size
        self.variable_names = group_names + [f"head_{i}_{h}" for i in range(num_layers) for h in range(heads)] + [
            f"unit_{i}_{u}" for i in range(num_layers) for u in range(units)
        ]
        size = len(self.variable_names)
        self.lower = np.zeros(size, dtype=np.int64)
        self.upper = np.ones(size, dtype=np.int64)
        self._num_group_bits = len(group_names)
        self._num_head_bits = len(group_names) + num_layers * heads

    @functools.cached_property
    def config_space(self) -> dict[str, Domain]:
        bit = randint(0, 1)  # one shared, immutable domain object for all 37k variables
        return dict.fromkeys(self.variable_names, bit)

    def vector_to_subnet(self, vector: np.ndarray) -> SubNetwork:
        vector = np.asarray(vector, dtype=bool)
        num_layers = self.shape.num_layers
        heads = vector[self._num_group_bits : self._num_head_bits].reshape(num_layers, -1)
        if self.shape.grouped:
            groups = vector[: self._num_group_bits].reshape(num_layers, -1)
            heads = (groups[:, :, None] & heads[:, None, :]).reshape(num_layers, -1)
        return SubNetwork(heads, vector[self._num_head_bits :].reshape(num_layers, -1))

    def subnet_to_vector(self, subnet: SubNetwork) -> np.ndarray:
        if self.shape.grouped:
            by_group = subnet.head_mask.reshape(self.shape.num_layers, self.shape.kv_heads, -1)
            # Positions kept in any group; from_subnet refuses masks whose groups keep different ones.
            bits = [by_group.any(axis=2).ravel(), by_group.any(axis=1).ravel(), subnet.unit_mask.ravel()]
            return np.concatenate(bits).astype(np.int64)
        return np.concatenate([subnet.head_mask.ravel(), subnet.unit_mask.ravel()]).astype(np.int64)

    def midpoint(self) -> Config:
        """Bits have no middle value: keep the first half of every layer's heads and units (under
        GQA: the first half of its groups, whole)."""
        layers, units = self.shape.num_layers, [(self.shape.intermediate_size + 1) // 2] * self.shape.num_layers
        if self.shape.grouped:
            half = SubNetwork.from_group_counts(
                self.shape, [(self.shape.kv_heads + 1) // 2] * layers, [self.shape.group_size] * layers, units
            )
        else:
            half = SubNetwork.from_counts(self.shape, [(self.shape.num_heads + 1) // 2] * layers, units)
        return self.vector_to_config(self.subnet_to_vector(half))


SEARCH_SPACES: dict[str, Callable[[ModelShape], SearchSpace]] = {
    cls.name: cls
    for cls in (
        SmallSearchSpace,
        SmallPowerOfTwoSearchSpace,
        MediumSearchSpace,
        LayerSearchSpace,
        LargeSearchSpace,
    )
}


#: The spaces whose sub-networks keep the *first* k heads and units of a layer: the ones where
#: sorting heads and units by importance (rewiring) changes which are kept.
FIRST_K_SPACES = (SmallSearchSpace.name, SmallPowerOfTwoSearchSpace.name, MediumSearchSpace.name)


@functools.lru_cache(maxsize=16)
def _cached_space(name: str, shape: ModelShape) -> SearchSpace:
    return SEARCH_SPACES[name](shape)


def get_search_space(name: str, shape: ModelShape) -> SearchSpace:
    """The search space called ``name`` for a model of ``shape`` (built once, then cached)."""
    if name not in SEARCH_SPACES:
        raise NaspruneError(
            f"unknown search space '{name}'; choose one of: {', '.join(SEARCH_SPACES)}"
        )
    return _cached_space(name, shape)
