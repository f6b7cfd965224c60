"""GPT-NeoX (Pythia): pre-norm decoder layers with a fused ``query_key_value`` projection whose
output rows interleave head by head (``[heads, 3, head_dim]``), partial rotary embeddings (the
first ``rotary_pct`` of each head's features are rotated) and, by default, a parallel residual:
``x + attention(ln_1(x)) + mlp(ln_2(x))``.

The encoder reads Q, K and V as separate ``[heads * head_dim, d]`` weights. Those rows are not
evenly spaced in the fused weight, so no tensor view holds them: :class:`InterleavedHeadPart`
gathers them on each read (differentiably, so training updates the fused parameter) and permutes
them in the fused parameter itself when heads are rewired (``permute_rows_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nasprune.supernet.base import register_adapter
from nasprune.supernet.decoder import AttentionDropout, DecoderAdapter, causal_attention
from nasprune.supernet.encoder import LayerModules, Selector, apply_rotary, rotary_from_start


class InterleavedHeadPart:
    """Part ``part`` (0 = queries, 1 = keys, 2 = values) of a fused projection whose output rows
    are ``[num_heads, parts, head_dim]``, seen as an ``nn.Linear`` with ``num_heads * head_dim``
    outputs (head by head)."""

    def __init__(self, linear: nn.Linear, part: int, parts: int, num_heads: int):
        if linear.out_features % (parts * num_heads):
            raise ValueError(f"{linear.out_features} output features do not split into {num_heads} x {parts} parts")
        self.linear, self.part, self.parts, self.num_heads = linear, part, parts, num_heads
        self.head_dim = linear.out_features // (parts * num_heads)
        self.out_features = num_heads * self.head_dim
        self.in_features = linear.in_features

    def _rows(self, tensor: torch.Tensor) -> torch.Tensor:
        rest = tensor.shape[1:]
        grouped = tensor.view(self.num_heads, self.parts, self.head_dim, *rest)
        return grouped[:, self.part].reshape(self.out_features, *rest)

    def fused_rows(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Indices into the fused projection's outputs of this part's output features ``rows``."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        head, feature = rows // self.head_dim, rows % self.head_dim
        return (head * self.parts + self.part) * self.head_dim + feature

    @property
    def weight(self) -> torch.Tensor:
        return self._rows(self.linear.weight)

    @property
    def bias(self) -> torch.Tensor | None:
        return None if self.linear.bias is None else self._rows(self.linear.bias)

    @torch.no_grad()
    def permute_rows_(self, index: torch.Tensor) -> None:
        """Reorder this part's output features in place in the fused parameters: feature i takes
        the values of feature ``index[i]``."""
        target = self.fused_rows(np.arange(self.out_features)).to(self.linear.weight.device)
        source = self.fused_rows(index.cpu().numpy()).to(self.linear.weight.device)
        for tensor in (self.linear.weight, self.linear.bias):
            if tensor is not None:
                tensor.index_copy_(0, target, tensor.index_select(0, source))


class PartialRotaryAttention:
    """What a GPT-NeoX attention layer computes on the kept heads: rotary embeddings of the first
    ``rotary_ndims`` features of queries and keys at positions 0..T-1 (as HF without a cache, whatever
    the padding), then causal scaled dot-product attention."""

    def __init__(self, rotary: nn.Module):
        self.rotary = rotary

    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        ext_mask: torch.Tensor | None,
        dropout_p: float,
        scale: float,
        heads: Selector,
    ) -> torch.Tensor:
        cos, sin = rotary_from_start(self.rotary, query)  # [1, 1, T, rotary_ndims] in the query's dtype, as HF
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        return causal_attention(query, key, value, ext_mask, dropout_p, scale)


@register_adapter
class GPTNeoXAdapter(DecoderAdapter):
    """``GPTNeoXForCausalLM`` and ``GPTNeoXForSequenceClassification`` (Pythia)."""

    model_types = ("gpt_neox",)
    base_attr = "gpt_neox"
    causal_lm_class_names = ("GPTNeoXForCausalLM",)
    sequence_classification_class_names = ("GPTNeoXForSequenceClassification",)
    final_norm_attr = "final_layer_norm"

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        base = self.base_model(model)
        return base.emb_dropout(base.embed_in(input_ids))

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        # The rotary embedding belongs to the base model, not to a layer.
        base = self.base_model(model)
        return [self._layer_modules(layer, base.rotary_emb, model.config) for layer in base.layers]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        raise NotImplementedError("GPT-NeoX layers need the model's rotary embedding: use encoder_layer_modules")

    def _layer_modules(self, layer: nn.Module, rotary: nn.Module, config: Any) -> LayerModules:
        attention, mlp = layer.attention, layer.mlp
        heads = config.num_attention_heads
        return LayerModules(
            query=InterleavedHeadPart(attention.query_key_value, 0, 3, heads),
            key=InterleavedHeadPart(attention.query_key_value, 1, 3, heads),
            value=InterleavedHeadPart(attention.query_key_value, 2, 3, heads),
            attn_probs_dropout=AttentionDropout(attention, attention.attention_dropout),
            attn_out=attention.dense,
            attn_out_dropout=layer.post_attention_dropout,
            attn_norm=layer.input_layernorm,
            ffn_in=mlp.dense_h_to_4h,
            activation=mlp.act,
            ffn_out=mlp.dense_4h_to_h,
            ffn_out_dropout=layer.post_mlp_dropout,
            ffn_norm=layer.post_attention_layernorm,
            pre_norm=True,
            parallel_residual=bool(config.use_parallel_residual),
            attend=PartialRotaryAttention(rotary),
        )
