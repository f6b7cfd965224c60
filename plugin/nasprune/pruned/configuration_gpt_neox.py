"""Configuration of a physically pruned GPT-NeoX (Pythia) model.

The source model's config plus, per kept layer, its heads and FFN units (``heads_per_layer``,
``units_per_layer``). ``num_attention_heads`` and ``intermediate_size`` stay the source model's:
the head size (and so the rotary dimensions) is ``hidden_size // num_attention_heads`` whatever a
layer keeps.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and ``huggingface_hub``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import GPTNeoXConfig


@strict
class PrunedGPTNeoXConfig(GPTNeoXConfig):
    r"""Configuration of a GPT-NeoX model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each layer; 0 means the layer has no attention block. Defaults to
            `num_attention_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each layer; 0 means no feed-forward block. Defaults to `intermediate_size`
            for every layer.

    All other arguments are those of [`GPTNeoXConfig`].
    """

    model_type = "nasprune_gpt_neox"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.heads_per_layer is None:
            self.heads_per_layer = [self.num_attention_heads] * self.num_hidden_layers
        if self.units_per_layer is None:
            self.units_per_layer = [self.intermediate_size] * self.num_hidden_layers
        self.heads_per_layer = [int(h) for h in self.heads_per_layer]
        self.units_per_layer = [int(u) for u in self.units_per_layer]
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Part of the `@strict` validation: the per-layer lists must fit the model."""
        super().validate_architecture()
        for name, values, upper in (
            ("heads_per_layer", self.heads_per_layer, self.num_attention_heads),
            ("units_per_layer", self.units_per_layer, self.intermediate_size),
        ):
            if len(values) != self.num_hidden_layers:
                raise ValueError(f"{name} has {len(values)} entries but num_hidden_layers is {self.num_hidden_layers}")
            if any(not 0 <= v <= upper for v in values):
                raise ValueError(f"{name} {values} must lie in [0, {upper}]")


__all__ = ["PrunedGPTNeoXConfig"]
