"""The sub-network: which layers, attention heads and FFN units of a transformer are kept.

A :class:`SubNetwork` is the one data type that flows through nasprune. Search spaces
produce it from a Syne Tune config, super-networks run it, counters measure it and the
exporter cuts it out. A layer is kept when any of its heads or units is kept; a layer
with no heads skips its attention block and one with no units skips its FFN block.

With grouped-query attention (GQA: ``num_kv_heads`` < ``num_heads``, each key/value head shared
by a group of ``group_size`` consecutive query heads) the head mask still holds query heads. A
sub-network is valid when in every layer each group keeps either none of its query heads or the
same number as every other non-empty group (so the kept query heads still split evenly over the
kept key/value heads); a group with no query head drops its key and value rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nasprune.errors import NaspruneError


#: HF ``model_type`` values whose FFN is gated. Here rather than on the family adapters because
#: this module is below them; tests/test_families_modern.py checks that both agree.
GATED_FFN_MODEL_TYPES = ("modernbert", "llama", "mistral", "qwen2", "qwen3")
#: HF ``model_type`` values of decoder (causal) language models: attention sees only earlier
#: tokens, which MAC counting follows. The decoder adapters set ``causal``; tests check both agree.
DECODER_MODEL_TYPES = ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3")


def _intermediate_size(config: Any) -> int:
    """The FFN width: ``intermediate_size``, DistilBERT's ``hidden_dim``, GPT-2's ``n_inner``
    (None there means 4 x the hidden size)."""
    for name in ("intermediate_size", "hidden_dim"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    if getattr(config, "model_type", "") == "gpt2":
        return int(getattr(config, "n_inner", None) or 4 * config.hidden_size)
    raise NaspruneError(f"cannot read the FFN width of a {type(config).__name__}: no intermediate_size")


def _relative_positions(config: Any) -> dict[str, int]:
    """``position_terms`` and ``position_rows`` of a DeBERTa-style config (relative attention)."""
    if not getattr(config, "relative_attention", False):
        return {}
    kinds = getattr(config, "pos_att_type", None) or []
    kinds = kinds.lower().split("|") if isinstance(kinds, str) else kinds
    terms = sum(kind.strip() in ("c2p", "p2c") for kind in kinds)
    span = getattr(config, "position_buckets", -1)
    if span <= 0:
        span = getattr(config, "max_relative_positions", -1)
        span = span if span >= 1 else config.max_position_embeddings
    return {"position_terms": int(terms), "position_rows": 2 * int(span) if terms else 0}


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a transformer (encoder or decoder) that a sub-network is cut from."""

    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    #: A FFN unit is a gate/up pair of input rows (a gated linear unit), not a single row.
    gated_ffn: bool = False
    #: Relative-position score terms per head (DeBERTa's c2p and p2c: 0 to 2), and the rows of
    #: relative-position embeddings each term projects and scores against (2 x the attention span).
    position_terms: int = 0
    position_rows: int = 0
    #: Key/value heads (grouped-query attention); 0 means one per query head (no GQA).
    num_kv_heads: int = 0
    #: A decoder: each token attends only to itself and earlier tokens.
    causal: bool = False

    def __post_init__(self) -> None:
        if self.num_kv_heads < 0 or (self.num_kv_heads and self.num_heads % self.num_kv_heads):
            raise NaspruneError(
                f"{self.num_heads} query heads do not split into {self.num_kv_heads} key/value groups"
            )

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer (``num_heads`` without GQA)."""
        return self.num_kv_heads or self.num_heads

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without GQA)."""
        return self.num_heads // self.kv_heads

    @property
    def grouped(self) -> bool:
        """Whether query heads share key/value heads (GQA or multi-query attention)."""
        return self.group_size > 1

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        """Read the shape from a HuggingFace ``PretrainedConfig`` (BERT-like families and the
        decoders of :data:`DECODER_MODEL_TYPES`)."""
        heads = config.num_attention_heads
        kv_heads = int(getattr(config, "num_key_value_heads", None) or 0)
        model_type = getattr(config, "model_type", "")
        return cls(
            num_layers=config.num_hidden_layers,
            num_heads=heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            hidden_size=config.hidden_size,
            intermediate_size=_intermediate_size(config),
            gated_ffn=model_type in GATED_FFN_MODEL_TYPES,
            **_relative_positions(config),
            num_kv_heads=0 if kv_heads == heads else kv_heads,
            causal=model_type in DECODER_MODEL_TYPES,
        )

    def check_per_head_and_unit(self, head: tuple[int, ...], unit: tuple[int, ...], what: str) -> None:
        """Raise :class:`NaspruneError` unless ``head`` is ``(L, H)`` and ``unit`` is ``(L, I)``.

        The one shape check for everything held per head and per FFN unit: masks, scales,
        permutations. ``what`` names it in the message.
        """
        expected = ((self.num_layers, self.num_heads), (self.num_layers, self.intermediate_size))
        if (tuple(head), tuple(unit)) != expected:
            raise NaspruneError(
                f"{what} {tuple(head)} / {tuple(unit)} do not fit this model: expected "
                f"[layers, heads] = {expected[0]} and [layers, units] = {expected[1]}"
            )

    def group_head_counts(self, head_mask: np.ndarray) -> np.ndarray:
        """Kept query heads per key/value group, ``[L, kv_heads]``, of a ``[L, H]`` head mask."""
        head_mask = np.asarray(head_mask, dtype=bool)
        return head_mask.reshape(head_mask.shape[0], self.kv_heads, self.group_size).sum(axis=2)

    def kv_mask(self, head_mask: np.ndarray) -> np.ndarray:
        """The key/value heads a ``[L, H]`` head mask needs, ``[L, kv_heads]``: those of the
        groups that keep any query head."""
        return self.group_head_counts(head_mask) > 0

    def check(self, subnet: "SubNetwork") -> None:
        """Raise :class:`NaspruneError` unless ``subnet`` was cut from a model of this shape
        (and, with GQA, keeps the same number of query heads in every non-empty group)."""
        self.check_per_head_and_unit(subnet.head_mask.shape, subnet.unit_mask.shape, "sub-network masks")
        if not self.grouped:
            return
        counts = self.group_head_counts(subnet.head_mask)
        for layer, row in enumerate(counts):
            kept = row[row > 0]
            if len(kept) and (kept != kept[0]).any():
                raise NaspruneError(
                    f"layer {layer} keeps {row.tolist()} query heads in its {self.kv_heads} key/value groups "
                    f"(of {self.group_size} heads each); with grouped-query attention every group must keep "
                    "either no head or the same number as the other non-empty groups"
                )


class SubNetwork:
    """Boolean head and unit masks of shape ``[num_layers, num_heads]`` and ``[num_layers, units]``.

    Instances are immutable and hashable, so they can key caches and archives.
    """

    __slots__ = ("head_mask", "unit_mask", "_key")

    def __init__(self, head_mask: Any, unit_mask: Any):
        head_mask = np.array(head_mask, dtype=bool)
        unit_mask = np.array(unit_mask, dtype=bool)
        if head_mask.ndim != 2 or unit_mask.ndim != 2 or head_mask.shape[0] != unit_mask.shape[0]:
            raise NaspruneError(
                f"head mask {head_mask.shape} and unit mask {unit_mask.shape} must be 2-D "
                "with one row per layer"
            )
        head_mask.setflags(write=False)
        unit_mask.setflags(write=False)
        object.__setattr__(self, "head_mask", head_mask)
        object.__setattr__(self, "unit_mask", unit_mask)
        object.__setattr__(
            self, "_key", (head_mask.shape, unit_mask.shape, np.packbits(head_mask).tobytes(),
                           np.packbits(unit_mask).tobytes())
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SubNetwork is immutable")

    # --- pickling and copying -----------------------------------------------------------
    # The default protocol restores __slots__ through setattr, which an immutable object
    # refuses; rebuilding from the two masks goes through __init__ and its checks instead, so
    # sub-networks cross process boundaries (multiprocessing, Ray, Syne Tune workers).
    def __reduce__(self) -> tuple[type["SubNetwork"], tuple[np.ndarray, np.ndarray]]:
        return (type(self), (self.head_mask, self.unit_mask))

    def __copy__(self) -> "SubNetwork":
        return self  # immutable: a copy could never differ from the original

    def __deepcopy__(self, memo: dict[int, Any]) -> "SubNetwork":
        return self  # the masks are read-only arrays owned by this instance

    # --- construction -------------------------------------------------------------------
    @classmethod
    def full(cls, shape: ModelShape) -> "SubNetwork":
        return cls(
            np.ones((shape.num_layers, shape.num_heads), bool),
            np.ones((shape.num_layers, shape.intermediate_size), bool),
        )

    @classmethod
    def from_counts(
        cls, shape: ModelShape, heads_per_layer: Sequence[int], units_per_layer: Sequence[int]
    ) -> "SubNetwork":
        """Keep the first ``heads_per_layer[i]`` heads and ``units_per_layer[i]`` units of layer i."""
        heads = np.asarray(heads_per_layer, dtype=int)
        units = np.asarray(units_per_layer, dtype=int)
        if heads.shape != (shape.num_layers,) or units.shape != (shape.num_layers,):
            raise NaspruneError(f"expected {shape.num_layers} per-layer head and unit counts")
        if heads.min() < 0 or heads.max() > shape.num_heads:
            raise NaspruneError(f"head counts {heads.tolist()} outside [0, {shape.num_heads}]")
        if units.min() < 0 or units.max() > shape.intermediate_size:
            raise NaspruneError(
                f"unit counts {units.tolist()} outside [0, {shape.intermediate_size}]"
            )
        head_mask = np.arange(shape.num_heads)[None, :] < heads[:, None]
        unit_mask = np.arange(shape.intermediate_size)[None, :] < units[:, None]
        return cls(head_mask, unit_mask)

    @classmethod
    def from_group_counts(
        cls,
        shape: ModelShape,
        groups_per_layer: Sequence[int],
        heads_per_group: Sequence[int],
        units_per_layer: Sequence[int],
    ) -> "SubNetwork":
        """Keep the first ``heads_per_group[i]`` query heads of each of the first
        ``groups_per_layer[i]`` key/value groups of layer i, and its first ``units_per_layer[i]``
        units: always valid under grouped-query attention. Without GQA, groups are heads."""
        groups = np.asarray(groups_per_layer, dtype=int)
        per_group = np.asarray(heads_per_group, dtype=int)
        if groups.shape != (shape.num_layers,) or per_group.shape != (shape.num_layers,):
            raise NaspruneError(f"expected {shape.num_layers} per-layer group and heads-per-group counts")
        if groups.min() < 0 or groups.max() > shape.kv_heads:
            raise NaspruneError(f"group counts {groups.tolist()} outside [0, {shape.kv_heads}]")
        if per_group.min() < 0 or per_group.max() > shape.group_size:
            raise NaspruneError(f"heads per group {per_group.tolist()} outside [0, {shape.group_size}]")
        in_group = np.arange(shape.group_size)[None, None, :] < per_group[:, None, None]
        group_kept = np.arange(shape.kv_heads)[None, :, None] < groups[:, None, None]
        head_mask = (in_group & group_kept).reshape(shape.num_layers, shape.num_heads)
        units = cls.from_counts(shape, np.zeros(shape.num_layers, int), units_per_layer).unit_mask
        return cls(head_mask, units)

    # --- views --------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.head_mask.shape[0]

    @property
    def heads_per_layer(self) -> np.ndarray:
        return self.head_mask.sum(axis=1)

    @property
    def units_per_layer(self) -> np.ndarray:
        return self.unit_mask.sum(axis=1)

    @property
    def kept_layers(self) -> list[int]:
        """Layers that still compute something (any head or any unit kept)."""
        return [i for i in range(self.num_layers) if self.head_mask[i].any() or self.unit_mask[i].any()]

    def head_indices(self, layer: int) -> np.ndarray:
        return np.flatnonzero(self.head_mask[layer])

    def unit_indices(self, layer: int) -> np.ndarray:
        return np.flatnonzero(self.unit_mask[layer])

    @property
    def is_prefix(self) -> bool:
        """True when every layer keeps its first k heads and first k units (contiguous slices)."""
        heads, units = self.heads_per_layer, self.units_per_layer
        return bool(
            all(self.head_mask[i, : heads[i]].all() for i in range(self.num_layers))
            and all(self.unit_mask[i, : units[i]].all() for i in range(self.num_layers))
        )

    def is_full(self) -> bool:
        return bool(self.head_mask.all() and self.unit_mask.all())

    # --- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form: counts for prefix sub-networks, index lists otherwise."""
        if self.is_prefix:
            return {
                "heads_per_layer": self.heads_per_layer.tolist(),
                "units_per_layer": self.units_per_layer.tolist(),
                "num_heads": int(self.head_mask.shape[1]),
                "intermediate_size": int(self.unit_mask.shape[1]),
            }
        return {
            "heads": [self.head_indices(i).tolist() for i in range(self.num_layers)],
            "units": [self.unit_indices(i).tolist() for i in range(self.num_layers)],
            "num_heads": int(self.head_mask.shape[1]),
            "intermediate_size": int(self.unit_mask.shape[1]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubNetwork":
        num_heads, num_units = int(data["num_heads"]), int(data["intermediate_size"])
        if "heads_per_layer" in data:
            heads, units = data["heads_per_layer"], data["units_per_layer"]
            head_mask = np.arange(num_heads)[None, :] < np.asarray(heads)[:, None]
            unit_mask = np.arange(num_units)[None, :] < np.asarray(units)[:, None]
            return cls(head_mask, unit_mask)
        head_mask = np.zeros((len(data["heads"]), num_heads), bool)
        unit_mask = np.zeros((len(data["units"]), num_units), bool)
        for i, (h, u) in enumerate(zip(data["heads"], data["units"])):
            head_mask[i, h] = True
            unit_mask[i, u] = True
        return cls(head_mask, unit_mask)

    # --- identity -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubNetwork) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return (
            f"SubNetwork(layers={len(self.kept_layers)}/{self.num_layers}, "
            f"heads={self.heads_per_layer.tolist()}, units={self.units_per_layer.tolist()})"
        )
