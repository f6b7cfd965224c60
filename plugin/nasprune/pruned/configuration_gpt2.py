"""Configuration of a physically pruned GPT-2 model.

The source model's config plus, per kept layer, its heads and FFN units (``heads_per_layer``,
``units_per_layer``) and its index in the source model (``source_layers``: with
``scale_attn_by_inverse_layer_idx`` a layer's attention scale depends on where it came from).
``n_head`` and ``n_inner`` stay the source model's: the head size is ``n_embd // n_head`` whatever
a layer keeps.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and ``huggingface_hub``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config


@strict
class PrunedGPT2Config(GPT2Config):
    r"""Configuration of a GPT-2 model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each layer; 0 means the layer has no attention block. Defaults to
            `n_head` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each layer; 0 means no feed-forward block. Defaults to `n_inner` (or
            `4 * n_embd`) for every layer.
        source_layers (`list[int]`, *optional*):
            The index of each layer in the unpruned model (defaults to 0, 1, 2, ...).

    All other arguments are those of [`GPT2Config`].
    """

    model_type = "nasprune_gpt2"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None
    source_layers: list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.heads_per_layer is None:
            self.heads_per_layer = [self.n_head] * self.n_layer
        if self.units_per_layer is None:
            self.units_per_layer = [self.ffn_width] * self.n_layer
        if self.source_layers is None:
            self.source_layers = list(range(self.n_layer))
        self.heads_per_layer = [int(h) for h in self.heads_per_layer]
        self.units_per_layer = [int(u) for u in self.units_per_layer]
        self.source_layers = [int(i) for i in self.source_layers]
        super().__post_init__(**kwargs)

    @property
    def ffn_width(self) -> int:
        """The source model's FFN width (GPT-2's default is 4 x the hidden size)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def kept_layer_values(cls, values: dict, kept: list[int]) -> dict:
        """The entries of a dense GPT-2 config ``values`` that follow the ``kept`` layers."""
        return {"n_layer": len(kept), "source_layers": list(kept)}

    def validate_architecture(self) -> None:
        """Part of the `@strict` validation: the per-layer lists must fit the model."""
        if self.add_cross_attention:
            raise ValueError("pruned GPT-2 models have no cross-attention")
        for name, values, upper in (
            ("heads_per_layer", self.heads_per_layer, self.n_head),
            ("units_per_layer", self.units_per_layer, self.ffn_width),
            ("source_layers", self.source_layers, None),
        ):
            if len(values) != self.n_layer:
                raise ValueError(f"{name} has {len(values)} entries but n_layer is {self.n_layer}")
            if upper is not None and any(not 0 <= v <= upper for v in values):
                raise ValueError(f"{name} {values} must lie in [0, {upper}]")


__all__ = ["PrunedGPT2Config"]
