"""ModernBERT: pre-norm layers without biases, a fused ``Wqkv``, rotary position embeddings,
alternating global and sliding-window attention, a gated FFN, and a head that pools after a final
LayerNorm (the first token, or the mean over tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasprune.supernet.base import FamilyAdapter, register_adapter
from nasprune.supernet.encoder import LayerModules, LinearPart, Selector, apply_rotary, rotary_from_start


def sliding_window_mask(
    ext_mask: torch.Tensor | None, length: int, window: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``ext_mask`` (additive, ``[N, 1, 1, T]`` or None) that also hides keys more than ``window``
    positions from the query: ``[N or 1, 1, T, T]``."""
    positions = torch.arange(length, device=device)
    far = (positions[:, None] - positions[None, :]).abs() > window
    band = torch.zeros((length, length), dtype=dtype, device=device).masked_fill(far, torch.finfo(dtype).min)
    band = band.view(1, 1, length, length)
    # Adding two minima would overflow to -inf (and NaNs for rows with no key left); the minimum
    # already means "never attend".
    return band if ext_mask is None else (ext_mask + band).clamp_min(torch.finfo(dtype).min)


class RotaryAttention:
    """Scaled dot-product attention of the kept heads after rotary position embeddings, optionally
    within a sliding window: what a ModernBERT attention layer computes, per head."""

    def __init__(self, rotary: nn.Module, layer_type: str, window: int | None):
        self.rotary = rotary
        self.layer_type = layer_type
        self.window = window

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
        cos, sin = rotary_from_start(self.rotary, query, self.layer_type)
        # HF rotates in float32 whatever the model's dtype; so do we.
        dtype = query.dtype
        query = apply_rotary(query.float(), cos, sin).to(dtype)
        key = apply_rotary(key.float(), cos, sin).to(dtype)
        if self.window is not None:
            ext_mask = sliding_window_mask(ext_mask, query.shape[-2], self.window, dtype, query.device)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=ext_mask, dropout_p=dropout_p, scale=scale)


@register_adapter
class ModernBertAdapter(FamilyAdapter):
    """``ModernBertForSequenceClassification`` and ``ModernBertForMultipleChoice``."""

    model_types = ("modernbert",)
    base_attr = "model"

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import ModernBertForSequenceClassification

        return (ModernBertForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import ModernBertForMultipleChoice

        return (ModernBertForMultipleChoice,)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return self.base_model(model).layers

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        # ModernBERT has no token types; its tokenizer does not emit them either.
        return self.embeddings(model)(input_ids=input_ids)

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        # The rotary embedding belongs to the base model, not to a layer.
        rotary = self.base_model(model).rotary_emb
        return [self._layer_modules(layer, rotary) for layer in self.layers(model)]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        raise NotImplementedError("ModernBERT layers need the model's rotary embedding: use encoder_layer_modules")

    def _layer_modules(self, layer: nn.Module, rotary: nn.Module) -> LayerModules:
        attention, mlp = layer.attn, layer.mlp
        window = attention.config.sliding_window if layer.attention_type == "sliding_attention" else None
        return LayerModules(
            query=LinearPart(attention.Wqkv, 0, 3),
            key=LinearPart(attention.Wqkv, 1, 3),
            value=LinearPart(attention.Wqkv, 2, 3),
            # Attention-probability dropout has HF's attention_dropout, as out_drop (an nn.Identity at 0).
            attn_probs_dropout=attention.out_drop,
            attn_out=attention.Wo,
            attn_out_dropout=attention.out_drop,
            attn_norm=layer.attn_norm,  # an nn.Identity in layer 0
            ffn_in=LinearPart(mlp.Wi, 0, 2),
            ffn_up=LinearPart(mlp.Wi, 1, 2),
            activation=mlp.act,
            ffn_inner_dropout=mlp.drop,
            ffn_out=mlp.Wo,
            ffn_out_dropout=nn.Identity(),
            ffn_norm=layer.mlp_norm,
            pre_norm=True,
            attend=RotaryAttention(rotary, layer.attention_type, window),
        )

    def logits(
        self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = self.base_model(model).final_norm(sequence_output)
        pooling = model.config.classifier_pooling
        if pooling == "mean":
            if attention_mask is None:
                pooled = hidden.mean(dim=1)
            else:
                weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
        elif task_kind == "multiple_choice" and attention_mask is not None:
            # HF's multiple-choice head reads the first non-padding token (left padding).
            first = attention_mask.long().argmax(dim=-1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        else:
            pooled = hidden[:, 0]
        return model.classifier(model.drop(model.head(pooled)))

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        return self.logits(model, sequence_output, task_kind, None)
