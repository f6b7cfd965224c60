"""Pruned GPT-2 and GPT-NeoX models that the stock HF classes can hold.

Stock GPT-2 and GPT-NeoX fix the head size as ``hidden_size // num_attention_heads`` and the fused
query/key/value projection as ``3 * hidden_size`` outputs, and give every layer one FFN width
(``n_inner`` / ``intermediate_size``). So a pruned model fits them only when each of its layers
keeps *all* heads of the source and the same number of FFN units, more than zero: it then has
fewer layers and a narrower FFN, nothing else. GPT-2 with ``scale_attn_by_inverse_layer_idx``
also scales each layer's attention by its position, so there the kept layers must be the first
ones. Such a model is exported with ``model_type`` ``gpt2`` / ``gpt_neox`` and stock weight names
(``Conv1D`` weights transposed, GPT-NeoX's ``query_key_value`` interleaved head by head again),
which any runtime that knows the stock families loads without custom code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
)

# Keys of the pruned config that stock configs do not have.
_PRUNED_ONLY_KEYS = ("heads_per_layer", "units_per_layer", "source_layers", "model_type", "architectures",
                     "auto_map", "transformers_version", "_name_or_path")


def fits_stock(config: Any) -> bool:
    """Whether a pruned GPT-2 / GPT-NeoX config fits its stock family (see the module docstring)."""
    heads, units = list(config.heads_per_layer), list(config.units_per_layer)
    if not heads or any(h != config.num_attention_heads for h in heads) or len(set(units)) != 1 or units[0] < 1:
        return False
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        return list(config.source_layers) == list(range(len(heads)))
    return True


def _stock_values(config: Any) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _PRUNED_ONLY_KEYS}


def _layer_tensors(state: dict, prefix: str, index: int) -> dict[str, torch.Tensor]:
    """The pruned layer's tensors by their name inside the layer (``attention.query.weight``, ...)."""
    start = f"{prefix}encoder.layer.{index}."
    return {key[len(start):]: value for key, value in state.items() if key.startswith(start)}


def _gpt2_state(pruned: nn.Module) -> dict[str, torch.Tensor]:
    state = pruned.state_dict()
    out = {k: v for k, v in state.items() if ".encoder.layer." not in k}
    for i in range(pruned.config.n_layer):
        t = _layer_tensors(state, "transformer.", i)
        stock = f"transformer.h.{i}."
        # Conv1D holds [in, out]: the transpose of nn.Linear's weight.
        out[f"{stock}attn.c_attn.weight"] = torch.cat(
            [t[f"attention.{n}.weight"] for n in ("query", "key", "value")], dim=0
        ).t().contiguous()
        out[f"{stock}attn.c_attn.bias"] = torch.cat([t[f"attention.{n}.bias"] for n in ("query", "key", "value")])
        out[f"{stock}attn.c_proj.weight"] = t["attention.output.weight"].t().contiguous()
        out[f"{stock}attn.c_proj.bias"] = t["attention.output.bias"]
        out[f"{stock}mlp.c_fc.weight"] = t["feed_forward.intermediate.weight"].t().contiguous()
        out[f"{stock}mlp.c_fc.bias"] = t["feed_forward.intermediate.bias"]
        out[f"{stock}mlp.c_proj.weight"] = t["feed_forward.output.weight"].t().contiguous()
        out[f"{stock}mlp.c_proj.bias"] = t["feed_forward.output.bias"]
        for norm, block in (("ln_1", "attention"), ("ln_2", "feed_forward")):
            out[f"{stock}{norm}.weight"] = t[f"{block}.LayerNorm.weight"]
            out[f"{stock}{norm}.bias"] = t[f"{block}.LayerNorm.bias"]
    return out


def _gpt_neox_state(pruned: nn.Module) -> dict[str, torch.Tensor]:
    config = pruned.config
    heads = config.num_attention_heads
    state = pruned.state_dict()
    out = {k: v for k, v in state.items() if ".encoder.layer." not in k}
    for i in range(config.num_hidden_layers):
        t = _layer_tensors(state, "gpt_neox.", i)
        stock = f"gpt_neox.layers.{i}."
        for kind in ("weight", "bias"):
            parts = [t.get(f"attention.{n}.{kind}") for n in ("query", "key", "value")]
            if parts[0] is None:
                continue  # attention_bias=False
            # GPT-NeoX's fused rows are [heads, (q, k, v), head_dim].
            rest = parts[0].shape[1:]
            fused = torch.stack([p.reshape(heads, -1, *rest) for p in parts], dim=1)
            out[f"{stock}attention.query_key_value.{kind}"] = fused.reshape(-1, *rest)
        names = {
            "attention.output": "attention.dense",
            "feed_forward.intermediate": "mlp.dense_h_to_4h",
            "feed_forward.output": "mlp.dense_4h_to_h",
            "attention.LayerNorm": "input_layernorm",
            "feed_forward.LayerNorm": "post_attention_layernorm",
        }
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                if f"{ours}.{kind}" in t:
                    out[f"{stock}{theirs}.{kind}"] = t[f"{ours}.{kind}"]
    return out


def to_stock_gpt(pruned: nn.Module, family: str) -> nn.Module:
    """The stock ``gpt2`` / ``gpt_neox`` model (same weights, same logits) of a pruned model that fits.

    :raises ValueError: when :func:`fits_stock` says it does not fit
    """
    config = pruned.config
    if not fits_stock(config):
        raise ValueError(
            f"a pruned model keeping heads {config.heads_per_layer} and units {config.units_per_layer} "
            "has no stock equivalent (every layer must keep all heads and the same units)"
        )
    values = _stock_values(config)
    causal_lm = "ForCausalLM" in type(pruned).__name__
    if family == "gpt2":
        values.update(n_layer=len(config.heads_per_layer), n_inner=int(config.units_per_layer[0]))
        stock = (GPT2LMHeadModel if causal_lm else GPT2ForSequenceClassification)(GPT2Config(**values))
        state = _gpt2_state(pruned)
    elif family == "gpt_neox":
        values.update(num_hidden_layers=len(config.heads_per_layer), intermediate_size=int(config.units_per_layer[0]))
        stock = (GPTNeoXForCausalLM if causal_lm else GPTNeoXForSequenceClassification)(GPTNeoXConfig(**values))
        state = _gpt_neox_state(pruned)
    else:
        raise ValueError(f"no stock GPT family {family!r}")
    reference = next(pruned.parameters())
    stock.to(device=reference.device, dtype=reference.dtype)
    stock.load_state_dict(state, strict=True)
    return stock.eval()


#: The dense ``model_type`` values this module converts.
STOCK_GPT_FAMILIES = ("gpt2", "gpt_neox")

__all__ = ["STOCK_GPT_FAMILIES", "fits_stock", "to_stock_gpt"]
