"""Cut a sub-network out of a dense model: the kept rows and columns of every projection.

:func:`slice_subnetwork` copies the kept rows and columns into a :mod:`nasprune.pruned` model: Q/K/V
rows and output-projection columns of the kept heads, FFN rows and columns of the kept units.
Layers that keep neither heads nor units are dropped. Heads and units need not be a prefix: the
kept ones are re-indexed in their original order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.export.slicing_llama import LLAMA_MODEL_TYPES, llama_pruned_config, llama_state
from nasprune.pruned import PRUNED_FAMILIES, PrunedFamily
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import encoder_layers, get_adapter, head_feature_indices, unwrap

# Keys of a HF config that describe the dense checkpoint rather than the architecture.
_DROPPED_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


def _pruned_family(hf_model: nn.Module) -> PrunedFamily:
    model_type = getattr(hf_model.config, "model_type", "")
    get_adapter(model_type)  # a clear NaspruneError for families the super-network cannot run
    if model_type not in PRUNED_FAMILIES:
        raise NaspruneError(
            f"exporting {model_type!r} models is not supported; exportable families: "
            f"{', '.join(sorted(PRUNED_FAMILIES))}"
        )
    return PRUNED_FAMILIES[model_type]


def pruned_config(hf_config: Any, subnet: SubNetwork) -> Any:
    """The pruned config of ``subnet``: the dense config with one entry per *kept* layer."""
    family = PRUNED_FAMILIES.get(getattr(hf_config, "model_type", ""))
    if family is None:
        raise NaspruneError(f"cannot build a pruned config for model type {hf_config.model_type!r}")
    kept = subnet.kept_layers
    values = {k: v for k, v in hf_config.to_dict().items() if k not in _DROPPED_CONFIG_KEYS}
    values.update(
        num_hidden_layers=len(kept),
        heads_per_layer=[int(subnet.heads_per_layer[i]) for i in kept],
        units_per_layer=[int(subnet.units_per_layer[i]) for i in kept],
    )
    # Families with other per-layer config entries (ModernBERT's attention types) pick the kept ones.
    kept_layer_values = getattr(family.config, "kept_layer_values", None)
    if kept_layer_values is not None:
        values.update(kept_layer_values(values, kept))
    return family.config(**values)


def _layer_state(modules: Any, subnet: SubNetwork, layer: int, head_dim: int, prefix: str) -> dict:
    """The pruned layer's weights, named as in :class:`nasprune.pruned.modeling.PrunedLayer`."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, module: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None):
        if getattr(module, "weight", None) is None:
            return  # a norm that is an nn.Identity (ModernBERT's first layer): nothing to copy
        weight = module.weight.detach()
        if rows is not None:
            weight = weight.index_select(0, rows.to(weight.device))
        if cols is not None:
            weight = weight.index_select(1, cols.to(weight.device))
        state[f"{prefix}{name}.weight"] = weight
        if module.bias is not None:
            bias = module.bias.detach()
            state[f"{prefix}{name}.bias"] = bias if rows is None else bias.index_select(0, rows.to(bias.device))

    if subnet.head_mask[layer].any():
        rows = torch.as_tensor(head_feature_indices(subnet.head_indices(layer), head_dim), dtype=torch.long)
        for name, module in (("query", modules.query), ("key", modules.key), ("value", modules.value)):
            put(f"attention.{name}", module, rows=rows)
        for index, module in enumerate(modules.head_projections):  # e.g. DeBERTa's position projections
            put(f"attention.head_projections.{index}", module, rows=rows)
        put("attention.output", modules.attn_out, cols=rows)
        put("attention.LayerNorm", modules.attn_norm)
    if subnet.unit_mask[layer].any():
        units = torch.as_tensor(subnet.unit_indices(layer), dtype=torch.long)
        put("feed_forward.intermediate", modules.ffn_in, rows=units)
        if modules.ffn_up is not None:  # the second input projection of a gated FFN
            put("feed_forward.up", modules.ffn_up, rows=units)
        put("feed_forward.output", modules.ffn_out, cols=units)
        put("feed_forward.LayerNorm", modules.ffn_norm)
    return state


def slice_subnetwork(model: nn.Module, subnet: SubNetwork) -> nn.Module:
    """A physically pruned copy of ``subnet`` of ``model``, in eval mode.

    ``model`` is a :class:`~nasprune.supernet.SuperNetwork` or the HF task model it wraps
    (a sequence-classification or multiple-choice model of a family in
    :data:`~nasprune.pruned.PRUNED_FAMILIES`). The result is a
    ``PreTrainedModel`` of :mod:`nasprune.pruned` on the same device and dtype, whose logits equal
    those of the super-network running ``subnet``, and whose parameter count equals
    ``ParameterCounter(model).count(subnet)``. The source model is not modified.
    """
    hf_model = unwrap(model)
    family = _pruned_family(hf_model)
    task_kind = get_adapter(hf_model.config.model_type).task_kind(hf_model)
    shape = ModelShape.from_config(hf_model.config)
    shape.check(subnet)

    if hf_model.config.model_type in LLAMA_MODEL_TYPES:
        # Llama-family pruned classes keep HF's weight names: one state cut, parameter by parameter.
        pruned = family.task_class(task_kind)(llama_pruned_config(hf_model.config, subnet, family.config))
        return _loaded(pruned, llama_state(hf_model, pruned, subnet), hf_model)

    config = pruned_config(hf_model.config, subnet)
    pruned = family.task_class(task_kind)(config)

    # Everything outside the encoder layers (embeddings, pooler, classifier, DeBERTa's relative
    # embeddings) has the same names in the dense and the pruned model, because the pruned model
    # reuses HF's modules for them.
    source = hf_model.state_dict()
    encoder_prefix = f"{pruned.base_model_prefix}.encoder."
    state = {k: source[k] for k in pruned.state_dict() if not k.startswith(f"{encoder_prefix}layer.")}
    layers = encoder_layers(hf_model)
    for new_index, old_index in enumerate(subnet.kept_layers):
        state.update(
            _layer_state(
                layers[old_index],
                subnet,
                old_index,
                shape.head_dim,
                f"{encoder_prefix}layer.{new_index}.",
            )
        )
    return _loaded(pruned, state, hf_model)


def _loaded(pruned: nn.Module, state: dict, hf_model: nn.Module) -> nn.Module:
    """``pruned`` with ``state`` loaded (every weight, strictly), on ``hf_model``'s device and dtype, in eval mode."""
    reference = next(hf_model.parameters())
    pruned.to(device=reference.device, dtype=reference.dtype)
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()
