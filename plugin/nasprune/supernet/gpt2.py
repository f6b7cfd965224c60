"""GPT-2: pre-norm decoder layers whose projections are ``Conv1D`` modules (weights stored
``[in, out]``, the transpose of ``nn.Linear``'s), a fused ``c_attn`` for queries, keys and values,
and learned position embeddings added to the token embeddings.

The encoder reads ``nn.Linear``-shaped weights, so each projection is handed over as a
:class:`Conv1DPart`: a view of the shared ``Conv1D`` parameter (one third of ``c_attn``'s outputs
for Q, K, V), transposed. Being views, reading, slicing, training and rewiring them in place act
on the model's own weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.supernet.base import register_adapter
from nasprune.supernet.decoder import DecoderAdapter, causal_attention
from nasprune.supernet.encoder import LayerModules, Selector


class Conv1DPart:
    """Part ``part`` of ``parts`` equal chunks of a ``Conv1D``'s outputs, seen as an ``nn.Linear``:
    ``weight`` is ``[out, in]`` and ``bias`` ``[out]``, both views of the Conv1D's parameters."""

    def __init__(self, conv: nn.Module, part: int = 0, parts: int = 1):
        inputs, outputs = conv.weight.shape
        if outputs % parts:
            raise ValueError(f"{outputs} output features do not split into {parts} parts")
        self.conv, self.part, self.parts = conv, part, parts
        self.out_features = outputs // parts
        self.in_features = inputs

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight.narrow(1, self.part * self.out_features, self.out_features).t()

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self.conv.bias
        return None if bias is None else bias.narrow(0, self.part * self.out_features, self.out_features)


class ScaledCausalAttention:
    """Scaled dot-product attention with a fixed scale: GPT-2 without ``scale_attn_weights`` (scale
    1) or with ``scale_attn_by_inverse_layer_idx`` (``1 / (sqrt(dh) * (layer + 1))``)."""

    def __init__(self, scale: float):
        self.scale = scale

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
        return causal_attention(query, key, value, ext_mask, dropout_p, self.scale)


def attention_scale(config: Any, layer: int) -> float:
    """The attention scale of GPT-2 layer ``layer`` (HF's ``GPT2Attention.scaling``)."""
    scale = (config.hidden_size // config.num_attention_heads) ** -0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    return scale


@register_adapter
class GPT2Adapter(DecoderAdapter):
    """``GPT2LMHeadModel`` and ``GPT2ForSequenceClassification``."""

    model_types = ("gpt2",)
    base_attr = "transformer"
    causal_lm_class_names = ("GPT2LMHeadModel",)
    sequence_classification_class_names = ("GPT2ForSequenceClassification",)
    layers_attr = "h"
    final_norm_attr = "ln_f"

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        # As GPT2Model without a cache: positions 0..T-1 whatever the padding, and token types (when
        # a caller passes them) looked up in the token embeddings.
        base = self.base_model(model)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device).unsqueeze(0)
        hidden = base.wte(input_ids) + base.wpe(positions)
        if token_type_ids is not None:
            hidden = hidden + base.wte(token_type_ids)
        return base.drop(hidden)

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        config = model.config
        if getattr(config, "add_cross_attention", False):
            raise NaspruneError("GPT-2 models with cross-attention (add_cross_attention) are not supported")
        # The encoder's own scale is 1/sqrt(head_dim); other scales go through ``attend``.
        default = config.scale_attn_weights and not config.scale_attn_by_inverse_layer_idx
        return [
            self._layer_modules(block, None if default else ScaledCausalAttention(attention_scale(config, index)))
            for index, block in enumerate(self.layers(model))
        ]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        raise NotImplementedError("a GPT-2 layer's attention scale depends on the config: use encoder_layer_modules")

    def _layer_modules(self, block: nn.Module, attend: ScaledCausalAttention | None) -> LayerModules:
        attention, mlp = block.attn, block.mlp
        return LayerModules(
            query=Conv1DPart(attention.c_attn, 0, 3),
            key=Conv1DPart(attention.c_attn, 1, 3),
            value=Conv1DPart(attention.c_attn, 2, 3),
            attn_probs_dropout=attention.attn_dropout,
            attn_out=Conv1DPart(attention.c_proj),
            attn_out_dropout=attention.resid_dropout,
            attn_norm=block.ln_1,
            ffn_in=Conv1DPart(mlp.c_fc),
            activation=mlp.act,
            ffn_out=Conv1DPart(mlp.c_proj),
            ffn_out_dropout=mlp.dropout,
            ffn_norm=block.ln_2,
            pre_norm=True,
            attend=attend,
        )
