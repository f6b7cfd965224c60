"""Configuration of a physically pruned ModernBERT model.

The source model's config plus, per kept layer, its heads and FFN units (``heads_per_layer``,
``units_per_layer``) and its index in the source model (``source_layers``): ModernBERT's first
layer has no attention LayerNorm, so whether a pruned layer has one depends on where it came from.
``layer_types`` lists the kept layers' attention types (global or sliding window).

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and ``huggingface_hub``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import ModernBertConfig


@strict
class PrunedModernBertConfig(ModernBertConfig):
    r"""Configuration of a ModernBERT model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each layer; 0 means the layer has no attention block. Defaults to
            `num_attention_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            Gated FFN units of each layer (a unit is a gate/up pair); 0 means no feed-forward block.
            Defaults to `intermediate_size` for every layer.
        source_layers (`list[int]`, *optional*):
            The index of each layer in the unpruned model (defaults to 0, 1, 2, ...); only source
            layer 0 has no attention LayerNorm.

    All other arguments are those of [`ModernBertConfig`].
    """

    model_type = "nasprune_modernbert"
    _auto_class = "AutoConfig"
    # The keys `rope_parameters` is nested under. HF reads them off `layer_types` otherwise, and a
    # pruned model may keep layers of one type only, or none at all.
    _rope_type_labels = ("full_attention", "sliding_attention")

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None
    source_layers: list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.heads_per_layer is None:
            self.heads_per_layer = [self.num_attention_heads] * self.num_hidden_layers
        if self.units_per_layer is None:
            self.units_per_layer = [self.intermediate_size] * self.num_hidden_layers
        if self.source_layers is None:
            self.source_layers = list(range(self.num_hidden_layers))
        self.heads_per_layer = [int(h) for h in self.heads_per_layer]
        self.units_per_layer = [int(u) for u in self.units_per_layer]
        self.source_layers = [int(i) for i in self.source_layers]
        super().__post_init__(**kwargs)

    @classmethod
    def kept_layer_values(cls, values: dict, kept: list[int]) -> dict:
        """The entries of a dense ModernBERT config ``values`` that follow the ``kept`` layers."""
        return {"layer_types": [values["layer_types"][i] for i in kept], "source_layers": list(kept)}

    def validate_architecture(self):
        """Part of the `@strict` validation: the per-layer lists must fit the model."""
        super().validate_architecture()
        for name, values, upper in (
            ("heads_per_layer", self.heads_per_layer, self.num_attention_heads),
            ("units_per_layer", self.units_per_layer, self.intermediate_size),
            ("source_layers", self.source_layers, None),
            ("layer_types", self.layer_types, None),
        ):
            if len(values) != self.num_hidden_layers:
                raise ValueError(f"{name} has {len(values)} entries but num_hidden_layers is {self.num_hidden_layers}")
            if upper is not None and any(not 0 <= v <= upper for v in values):
                raise ValueError(f"{name} {values} must lie in [0, {upper}]")


__all__ = ["PrunedModernBertConfig"]
