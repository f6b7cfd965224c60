"""Exact parameter counts and MACs of sub-networks.

A sub-network's parameter count is what a physically pruned copy of the model would hold:
everything outside the encoder layers (embeddings, pooler, classifier), plus per layer the
Q/K/V rows and output-projection columns of the kept heads, the kept FFN units' rows and columns,
and the output bias and LayerNorm of a block only while the block keeps at least one head/unit.
With grouped-query attention a query head holds its Q rows and output-projection columns, and a
key/value head its K and V rows, kept while its group keeps any query head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import LayerModules, encoder_layers, get_adapter, unwrap


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _bias_numel(linear: nn.Linear) -> int:
    return 0 if linear.bias is None else linear.bias.numel()


@dataclass(frozen=True)
class LayerCounts:
    """Parameter counts of one encoder layer split by what a sub-network keeps.

    ``per_head`` holds a query head's K and V rows too unless the model has grouped-query
    attention; then those are ``per_kv_head``, counted per kept key/value head.
    """

    per_head: int
    attn_fixed: int
    per_unit: int
    ffn_fixed: int
    per_kv_head: int = 0


def _layer_counts(modules: LayerModules, num_heads: int, kv_heads: int) -> LayerCounts:
    def per(linears: tuple, heads: int) -> int:
        return sum((lin.weight.numel() + _bias_numel(lin)) // heads for lin in linears)

    grouped = kv_heads != num_heads
    key_value = (modules.key, modules.value)
    per_head = per((modules.query, *modules.head_projections) + (() if grouped else key_value), num_heads)
    per_head += modules.attn_out.weight.numel() // num_heads
    ffn_out = modules.ffn_out
    # A gated FFN unit has a row in each input projection (gate and up).
    inputs = [modules.ffn_in] + ([modules.ffn_up] if modules.ffn_up is not None else [])
    per_unit = sum(lin.weight.shape[1] + (1 if lin.bias is not None else 0) for lin in inputs)
    per_unit += ffn_out.weight.shape[0]
    attn_fixed = _bias_numel(modules.attn_out) + _numel(modules.attn_norm)
    attn_fixed += sum(_numel(module) for module in modules.attn_fixed_modules)
    return LayerCounts(
        per_head=per_head,
        attn_fixed=attn_fixed,
        per_unit=per_unit,
        ffn_fixed=_bias_numel(ffn_out) + _numel(modules.ffn_norm),
        per_kv_head=per(key_value, kv_heads) if grouped else 0,
    )


class ParameterCounter:
    """Counts the parameters of sub-networks of one model exactly.

    ``model`` is a HF task model of a supported family or a
    :class:`~nasprune.supernet.SuperNetwork` wrapping one.
    """

    def __init__(self, model: nn.Module):
        model = unwrap(model)
        adapter = get_adapter(getattr(model.config, "model_type", ""))
        self.shape = ModelShape.from_config(model.config)
        layers = list(adapter.layers(model))

        # model.parameters() yields each tied/shared parameter once.
        unique = {id(p): p.numel() for p in model.parameters()}
        in_layers = {id(p) for layer in layers for p in layer.parameters()}
        self.total = sum(unique.values())
        self.non_encoder = sum(n for pid, n in unique.items() if pid not in in_layers)

        self.layers = [
            _layer_counts(modules, self.shape.num_heads, self.shape.kv_heads) for modules in encoder_layers(model)
        ]
        self._per_head = np.array([c.per_head for c in self.layers], dtype=np.int64)
        self._per_kv_head = np.array([c.per_kv_head for c in self.layers], dtype=np.int64)
        self._attn_fixed = np.array([c.attn_fixed for c in self.layers], dtype=np.int64)
        self._per_unit = np.array([c.per_unit for c in self.layers], dtype=np.int64)
        self._ffn_fixed = np.array([c.ffn_fixed for c in self.layers], dtype=np.int64)

        full = self.count(SubNetwork.full(self.shape))
        if full != self.total:
            # Parameters the layer breakdown does not know about (e.g. cross-attention) would be
            # silently miscounted; refuse instead.
            raise NaspruneError(
                f"cannot count {type(model).__name__} exactly: its encoder layers hold "
                f"{self.total - self.non_encoder} parameters but the head/unit breakdown explains "
                f"{full - self.non_encoder}"
            )

    def count(self, subnet: SubNetwork) -> int:
        """The number of parameters of ``subnet`` once physically pruned."""
        self.shape.check(subnet)
        heads = subnet.heads_per_layer.astype(np.int64)
        units = subnet.units_per_layer.astype(np.int64)
        kv_heads = self.shape.kv_mask(subnet.head_mask).sum(axis=1).astype(np.int64)
        encoder = (
            heads * self._per_head
            + kv_heads * self._per_kv_head
            + (heads > 0) * self._attn_fixed
            + units * self._per_unit
            + (units > 0) * self._ffn_fixed
        )
        return int(self.non_encoder + encoder.sum())

    def relative(self, subnet: SubNetwork) -> float:
        """``count(subnet)`` as a fraction of the unpruned model."""
        return self.count(subnet) / self.total


def count_macs(subnet: SubNetwork, shape: ModelShape, seq_len: int) -> int:
    """Multiply-accumulates of the encoder (or decoder) layers for one sequence of ``seq_len`` tokens.

    Per kept head 3·T·d·dh (Q, K, V) + 2·T²·dh (scores and context) + T·dh·d (output
    projection); per kept FFN unit 2·T·d, or 3·T·d for a gated unit (gate, up and output).
    Sliding-window attention (ModernBERT's local layers) is counted as the dense T² it is computed
    as by scaled dot-product attention with a mask. DeBERTa's relative-position terms add per head
    and term R·d·dh (projecting the R relative embeddings) + T·R·dh (scoring against them).

    Decoders (``shape.causal``): token t scores and reads only tokens 1..t, so scores and context
    cost 2·(T(T+1)/2)·dh per head instead of 2·T²·dh; Llama-family sliding windows are counted as
    this causal cost too. With grouped-query attention a query head costs T·d·dh (Q) and each kept
    key/value head 2·T·d·dh (K, V), kept while its group keeps any query head.
    """
    shape.check(subnet)
    t, d, dh = int(seq_len), shape.hidden_size, shape.head_dim
    attended = t * (t + 1) // 2 if shape.causal else t * t  # query-key pairs
    per_query_head = t * d * dh + 2 * attended * dh + t * dh * d
    per_query_head += shape.position_terms * (shape.position_rows * d * dh + t * shape.position_rows * dh)
    per_kv_head = 2 * t * d * dh
    per_unit = (3 if shape.gated_ffn else 2) * t * d
    heads = int(subnet.head_mask.sum())
    kv_heads = int(shape.kv_mask(subnet.head_mask).sum()) if shape.grouped else heads
    units = int(subnet.unit_mask.sum())
    return heads * per_query_head + kv_heads * per_kv_head + units * per_unit


def relative_macs(subnet: SubNetwork, shape: ModelShape, seq_len: int) -> float:
    """``count_macs(subnet)`` as a fraction of the unpruned encoder's MACs."""
    return count_macs(subnet, shape, seq_len) / count_macs(SubNetwork.full(shape), shape, seq_len)


def count_fixed_macs(model: nn.Module, seq_len: int) -> int:
    """Multiply-accumulates outside the encoder layers for one sequence of ``seq_len`` tokens.

    They are the same for every sub-network, so :func:`count_macs` and relative MACs leave them
    out. Each linear layer outside the encoder layers counts ``in * out`` per token it runs on:
    every token for the family's per-token modules (ELECTRA's embedding projection: T·E·d), once
    per sequence for the others (pooler, DistilBERT's pre-classifier, classifiers). ``model`` is a
    HF task model of a supported family or a :class:`~nasprune.supernet.SuperNetwork`.
    """
    model = unwrap(model)
    adapter = get_adapter(getattr(model.config, "model_type", ""))
    in_layers = {id(m) for layer in adapter.layers(model) for m in layer.modules()}
    per_token = {id(m) for m in adapter.per_token_modules(model)}
    return sum(
        m.in_features * m.out_features * (int(seq_len) if id(m) in per_token else 1)
        for m in model.modules()
        if isinstance(m, nn.Linear) and id(m) not in in_layers
    )
