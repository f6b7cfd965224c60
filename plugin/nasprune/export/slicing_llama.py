"""Cut a sub-network out of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3).

The pruned classes (:mod:`nasprune.pruned.modeling_llama`) keep HF's weight names, so every pruned
weight is the source weight of the same name (layer index renumbered over the kept layers) with
some rows or columns taken:

- ``q_proj`` rows and ``o_proj`` columns of the kept query heads;
- ``k_proj`` / ``v_proj`` rows of the kept key/value heads: those of the groups that keep any query
  head (a valid sub-network keeps the same number of query heads in each such group, so query head
  ``j`` of the pruned layer still uses key/value head ``j // (heads / kv_heads)``);
- ``gate_proj`` / ``up_proj`` rows and ``down_proj`` columns of the kept SwiGLU units;
- everything else whole (embeddings, norms, Qwen3's per-head ``q_norm`` / ``k_norm``, the heads).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import head_feature_indices

#: The dense ``model_type`` values these functions export.
LLAMA_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# Keys of a HF config that describe the dense checkpoint rather than the architecture.
_DROPPED_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")
_LAYER_KEY = re.compile(r"^(?P<prefix>.*\blayers\.)(?P<index>\d+)\.(?P<rest>.+)$")


def kv_head_indices(shape: ModelShape, subnet: SubNetwork, layer: int) -> np.ndarray:
    """The key/value heads layer ``layer`` of ``subnet`` needs (those of its non-empty groups)."""
    return np.flatnonzero(shape.kv_mask(subnet.head_mask)[layer])


def llama_pruned_config(hf_config: Any, subnet: SubNetwork, config_class: type) -> Any:
    """The pruned config of ``subnet``: the dense config with one entry per *kept* layer."""
    shape = ModelShape.from_config(hf_config)
    kept = subnet.kept_layers
    values = {k: v for k, v in hf_config.to_dict().items() if k not in _DROPPED_CONFIG_KEYS}
    values.update(
        num_hidden_layers=len(kept),
        head_dim=shape.head_dim,
        heads_per_layer=[int(subnet.heads_per_layer[i]) for i in kept],
        kv_heads_per_layer=[len(kv_head_indices(shape, subnet, i)) for i in kept],
        units_per_layer=[int(subnet.units_per_layer[i]) for i in kept],
    )
    values.update(config_class.kept_layer_values(values, kept))
    return config_class(**values)


def _selection(shape: ModelShape, subnet: SubNetwork, layer: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Per parameter name inside a layer: how to cut the source tensor down to the kept widths."""

    def rows(indices: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: t.index_select(0, torch.as_tensor(indices, dtype=torch.long, device=t.device))

    def cols(indices: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: t.index_select(1, torch.as_tensor(indices, dtype=torch.long, device=t.device))

    query = head_feature_indices(subnet.head_indices(layer), shape.head_dim)
    key_value = head_feature_indices(kv_head_indices(shape, subnet, layer), shape.head_dim)
    units = subnet.unit_indices(layer)
    return {
        "self_attn.q_proj.weight": rows(query),
        "self_attn.q_proj.bias": rows(query),
        "self_attn.k_proj.weight": rows(key_value),
        "self_attn.k_proj.bias": rows(key_value),
        "self_attn.v_proj.weight": rows(key_value),
        "self_attn.v_proj.bias": rows(key_value),
        "self_attn.o_proj.weight": cols(query),
        "mlp.gate_proj.weight": rows(units),
        "mlp.gate_proj.bias": rows(units),
        "mlp.up_proj.weight": rows(units),
        "mlp.up_proj.bias": rows(units),
        "mlp.down_proj.weight": cols(units),
    }


def llama_state(hf_model: nn.Module, pruned: nn.Module, subnet: SubNetwork) -> dict[str, torch.Tensor]:
    """The state dict of ``pruned`` (built from :func:`llama_pruned_config`) cut from ``hf_model``."""
    shape = ModelShape.from_config(hf_model.config)
    source = hf_model.state_dict()
    kept = subnet.kept_layers
    selections = {}
    state = {}
    for key in pruned.state_dict():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = source[key].detach()
            continue
        old = kept[int(match["index"])]
        rest = match["rest"]
        if old not in selections:
            selections[old] = _selection(shape, subnet, old)
        tensor = source[f"{match['prefix']}{old}.{rest}"].detach()
        cut = selections[old].get(rest)
        state[key] = tensor if cut is None else cut(tensor)
    return state


__all__ = ["LLAMA_MODEL_TYPES", "kv_head_indices", "llama_pruned_config", "llama_state"]
