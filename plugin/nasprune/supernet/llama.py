"""The Llama family: Llama, Mistral, Qwen2 and Qwen3.

Pre-norm decoder layers with RMSNorm, rotary position embeddings, SwiGLU units (gate and up
projections: one unit is a row of each) and grouped-query attention. Mistral attends within a
sliding window in every layer when ``config.sliding_window`` is set; Qwen2 and Qwen3 in the layers
``config.layer_types`` marks ``sliding_attention``. Qwen3 normalises each head's queries and keys
(``q_norm``, ``k_norm``: one weight of ``head_dim`` shared by all heads) before the rotation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasprune.supernet.base import register_adapter
from nasprune.supernet.decoder import AttentionDropout, DecoderAdapter, causal_attention
from nasprune.supernet.encoder import LayerModules, Selector, apply_rotary, causal_mask, rotary_from_start


def sliding_window_causal_mask(ext_mask: torch.Tensor, window: int) -> torch.Tensor:
    """A causal additive mask ``[N or 1, 1, T, T]`` that also hides keys ``window`` or more
    positions before the query (HF: a key is seen when ``k > q - window``)."""
    length = ext_mask.shape[-1]
    positions = torch.arange(length, device=ext_mask.device)
    far = positions[None, :] <= positions[:, None] - window
    return ext_mask.masked_fill(far.view(1, 1, length, length), torch.finfo(ext_mask.dtype).min)


class RotaryCausalAttention:
    """What a Llama-family attention layer computes on the kept heads: optional per-head query/key
    RMSNorm (Qwen3), rotary embeddings at positions 0..T-1 (as HF without a cache, whatever the
    padding), then causal scaled dot-product attention with shared key/value heads, optionally
    within a sliding window."""

    def __init__(
        self,
        rotary: nn.Module,
        window: int | None = None,
        query_norm: nn.Module | None = None,
        key_norm: nn.Module | None = None,
    ):
        self.rotary = rotary
        self.window = window
        self.query_norm = query_norm
        self.key_norm = key_norm

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
        if self.query_norm is not None:
            query, key = self.query_norm(query), self.key_norm(key)
        cos, sin = rotary_from_start(self.rotary, query)  # [1, 1, T, dh] in the query's dtype, as HF
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if self.window is not None:
            # No padding gives no mask; the window needs one (the causal part included).
            if ext_mask is None:
                ext_mask = causal_mask(None, query.shape[-2], query.dtype, query.device)
            ext_mask = sliding_window_causal_mask(ext_mask, self.window)
        return causal_attention(query, key, value, ext_mask, dropout_p, scale)


def _window(config: Any, layer: int) -> int | None:
    """The sliding window of layer ``layer``, None for full attention."""
    window = getattr(config, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:  # Mistral: every layer, when a window is set
        return int(window)
    return int(window) if layer_types[layer] == "sliding_attention" else None


@register_adapter
class LlamaAdapter(DecoderAdapter):
    """``*ForCausalLM`` and ``*ForSequenceClassification`` of Llama, Mistral, Qwen2 and Qwen3."""

    model_types = ("llama", "mistral", "qwen2", "qwen3")
    base_attr = "model"
    causal_lm_class_names = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
    sequence_classification_class_names = (
        "LlamaForSequenceClassification",
        "MistralForSequenceClassification",
        "Qwen2ForSequenceClassification",
        "Qwen3ForSequenceClassification",
    )

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        # The rotary embedding belongs to the base model, not to a layer.
        base = self.base_model(model)
        return [
            self._layer_modules(layer, base.rotary_emb, _window(model.config, index))
            for index, layer in enumerate(base.layers)
        ]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        raise NotImplementedError("Llama-family layers need the model's rotary embedding: use encoder_layer_modules")

    def _layer_modules(self, layer: nn.Module, rotary: nn.Module, window: int | None) -> LayerModules:
        attention, mlp = layer.self_attn, layer.mlp
        query_norm, key_norm = getattr(attention, "q_norm", None), getattr(attention, "k_norm", None)
        return LayerModules(
            query=attention.q_proj,
            key=attention.k_proj,
            value=attention.v_proj,
            attn_probs_dropout=AttentionDropout(attention, attention.attention_dropout),
            attn_out=attention.o_proj,
            attn_out_dropout=nn.Identity(),
            attn_norm=layer.input_layernorm,
            ffn_in=mlp.gate_proj,
            ffn_up=mlp.up_proj,
            activation=mlp.act_fn,
            ffn_out=mlp.down_proj,
            ffn_out_dropout=nn.Identity(),
            ffn_norm=layer.post_attention_layernorm,
            pre_norm=True,
            attend=RotaryCausalAttention(rotary, window, query_norm, key_norm),
            attn_fixed_modules=tuple(m for m in (query_norm, key_norm) if m is not None),
        )
