"""Pruned Llama-family decoders that stock HF classes can hold: every layer keeps the same widths.

HF's Llama, Mistral, Qwen2 and Qwen3 give all layers one number of query heads, of key/value heads
and of MLP units, and ``head_dim`` is a config entry of its own. A pruned decoder fits them when
each kept layer keeps the same, non-zero numbers of all three: it then has fewer layers, heads and
units, nothing else. The pruned classes already use the stock weight names, so such a model is
the stock family's config (with ``num_attention_heads``, ``num_key_value_heads``,
``intermediate_size`` and an explicit ``head_dim``) plus the same state dict, and loads in any
runtime that knows the family, without custom code.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForCausalLM,
    MistralForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3ForSequenceClassification,
)

#: Dense ``model_type`` -> (stock config, causal-LM class, sequence-classification class).
STOCK_DECODER_CLASSES: dict[str, tuple[type, type, type]] = {
    "llama": (LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification),
    "mistral": (MistralConfig, MistralForCausalLM, MistralForSequenceClassification),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification),
}
# Keys of the pruned config that stock configs do not have (or that name the pruned classes).
_PRUNED_ONLY_KEYS = ("heads_per_layer", "kv_heads_per_layer", "units_per_layer", "model_type", "architectures",
                     "auto_map", "transformers_version", "_name_or_path")


def _stock_config(config: Any) -> Any | None:
    """The stock config of a pruned Llama-family config, or None where it has none."""
    family = str(getattr(config, "model_type", "")).removeprefix("nasprune_")
    if family not in STOCK_DECODER_CLASSES or not hasattr(config, "kv_heads_per_layer"):
        return None
    widths = set(zip(config.heads_per_layer, config.kv_heads_per_layer, config.units_per_layer))
    if len(widths) != 1:
        return None
    heads, kv_heads, units = widths.pop()
    if min(heads, kv_heads, units) < 1:
        return None
    values = {k: v for k, v in config.to_dict().items() if k not in _PRUNED_ONLY_KEYS}
    values.update(num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=units,
                  head_dim=config.head_dim)
    try:
        # Llama's config insists that hidden_size splits into the heads, even with an explicit head_dim.
        return STOCK_DECODER_CLASSES[family][0](**values)
    except (ValueError, TypeError):
        return None


def stock_decoder_family(config: Any) -> str | None:
    """The stock ``model_type`` a pruned Llama-family config fits (see the module's docstring), or None."""
    if _stock_config(config) is None:
        return None
    return str(config.model_type).removeprefix("nasprune_")


def to_stock_decoder(pruned: nn.Module) -> nn.Module:
    """The stock HF model (same weights, same logits) of a pruned Llama-family model that fits one.

    :raises ValueError: when :func:`stock_decoder_family` says it does not fit
    """
    config = pruned.config
    stock_config = _stock_config(config)
    if stock_config is None:
        raise ValueError(
            f"a pruned model keeping heads {config.heads_per_layer}, key/value heads "
            f"{config.kv_heads_per_layer} and units {config.units_per_layer} has no stock equivalent "
            "(every layer must keep the same, non-zero numbers)"
        )
    _, causal_lm, sequence_classification = STOCK_DECODER_CLASSES[str(config.model_type).removeprefix("nasprune_")]
    model_class = causal_lm if hasattr(pruned, "lm_head") else sequence_classification
    stock = model_class(stock_config)
    reference = next(pruned.parameters())
    stock.to(device=reference.device, dtype=reference.dtype)
    stock.load_state_dict(pruned.state_dict(), strict=True)
    return stock.eval()


__all__ = ["STOCK_DECODER_CLASSES", "stock_decoder_family", "to_stock_decoder"]
