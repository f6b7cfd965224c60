"""Configurations of physically pruned Llama-family decoders: Llama, Mistral, Qwen2 and Qwen3.

Each is its family's own config plus, per kept layer, its query heads, key/value heads and SwiGLU
units (``heads_per_layer``, ``kv_heads_per_layer``, ``units_per_layer``). ``head_dim`` stays the
source model's, so attention scales and rotary frequencies are unchanged. Qwen2/Qwen3's
``layer_types`` list the kept layers' attention types.

The key/value cache keeps one slot per layer that *has* attention (in order): layers without heads
store nothing. ``transformers`` builds a cache with one slot per entry of ``layer_types`` (or per
layer), so a sliding-window slot must belong to a sliding-window layer; the config checks that.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and ``huggingface_hub``.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config


def _fill_widths(config) -> None:
    """Default every layer to the full widths; ints, not numpy scalars, so the config saves as JSON."""
    layers = config.num_hidden_layers
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    if config.heads_per_layer is None:
        config.heads_per_layer = [config.num_attention_heads] * layers
    if config.kv_heads_per_layer is None:
        config.kv_heads_per_layer = [kv_heads] * layers
    if config.units_per_layer is None:
        config.units_per_layer = [config.intermediate_size] * layers
    for name in ("heads_per_layer", "kv_heads_per_layer", "units_per_layer"):
        setattr(config, name, [int(v) for v in getattr(config, name)])
    if getattr(config, "head_dim", None) is None:
        # Qwen2's config has no head_dim field; its attention reads one when present.
        config.head_dim = config.hidden_size // config.num_attention_heads


def layer_window(config: Any, index: int) -> int | None:
    """The sliding window of kept layer ``index``, or None for full attention (the family's rule:
    Qwen2/Qwen3 per ``layer_types``, Mistral for every layer, Llama never)."""
    window = getattr(config, "sliding_window", None) or None
    layer_types = getattr(config, "layer_types", None)
    if window is None:
        return None
    if layer_types is not None:
        return window if layer_types[index] == "sliding_attention" else None
    return window


def _check_widths(config) -> None:
    layers = config.num_hidden_layers
    kv_total = config.num_key_value_heads or config.num_attention_heads
    for name, values, upper in (
        ("heads_per_layer", config.heads_per_layer, config.num_attention_heads),
        ("kv_heads_per_layer", config.kv_heads_per_layer, kv_total),
        ("units_per_layer", config.units_per_layer, config.intermediate_size),
    ):
        if len(values) != layers:
            raise ValueError(f"{name} has {len(values)} entries but num_hidden_layers is {layers}")
        if any(not 0 <= v <= upper for v in values):
            raise ValueError(f"{name} {values} must lie in [0, {upper}]")
    for index, (heads, kv_heads) in enumerate(zip(config.heads_per_layer, config.kv_heads_per_layer)):
        if (heads == 0) != (kv_heads == 0) or (kv_heads and heads % kv_heads):
            raise ValueError(
                f"layer {index} keeps {heads} query heads over {kv_heads} key/value heads: each key/value "
                "head must serve the same number of query heads"
            )
    # Cache slot k holds the k-th layer with attention; a slot the cache makes sliding keeps only the
    # last `sliding_window` tokens, which only a sliding-window layer may use.
    attending = [i for i in range(layers) if config.heads_per_layer[i] > 0]
    for slot, index in enumerate(attending):
        if layer_window(config, slot) is not None and layer_window(config, index) is None:
            raise ValueError(
                f"layer {index} attends to every token but would use cache slot {slot}, which keeps a "
                "sliding window; keep the same attention layers of each type or export with full attention"
            )


class _PrunedWidthsMixin:
    """The per-layer widths' defaults and checks, shared by the four families' configs."""

    def __post_init__(self, **kwargs):
        _fill_widths(self)
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Part of the `@strict` validation: the per-layer widths must fit the model."""
        super().validate_architecture()
        _check_widths(self)

    @classmethod
    def kept_layer_values(cls, values: dict, kept: list[int]) -> dict:
        """The entries of a dense config ``values`` that follow the ``kept`` layers."""
        if values.get("layer_types") is None:
            return {}
        return {"layer_types": [values["layer_types"][i] for i in kept]}


_DOC = r"""Configuration of a {family} model whose layers keep different numbers of heads and units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Query heads of each layer; 0 means the layer has no attention block. Defaults to
            `num_attention_heads` for every layer.
        kv_heads_per_layer (`list[int]`, *optional*):
            Key/value heads of each layer (grouped-query attention: each serves
            `heads_per_layer[i] // kv_heads_per_layer[i]` query heads). Defaults to `num_key_value_heads`.
        units_per_layer (`list[int]`, *optional*):
            SwiGLU units of each layer (a gate/up pair); 0 means no MLP block. Defaults to
            `intermediate_size` for every layer.

    All other arguments are those of [`{base}`].
"""


@strict
class PrunedLlamaConfig(_PrunedWidthsMixin, LlamaConfig):
    __doc__ = _DOC.format(family="Llama", base="LlamaConfig")
    model_type = "nasprune_llama"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    kv_heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


@strict
class PrunedMistralConfig(_PrunedWidthsMixin, MistralConfig):
    __doc__ = _DOC.format(family="Mistral", base="MistralConfig")
    model_type = "nasprune_mistral"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    kv_heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


@strict
class PrunedQwen2Config(_PrunedWidthsMixin, Qwen2Config):
    __doc__ = _DOC.format(family="Qwen2", base="Qwen2Config")
    model_type = "nasprune_qwen2"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    kv_heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None
    head_dim: int | None = None


@strict
class PrunedQwen3Config(_PrunedWidthsMixin, Qwen3Config):
    __doc__ = _DOC.format(family="Qwen3", base="Qwen3Config")
    model_type = "nasprune_qwen3"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    kv_heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


__all__ = ["PrunedLlamaConfig", "PrunedMistralConfig", "PrunedQwen2Config", "PrunedQwen3Config", "layer_window"]
