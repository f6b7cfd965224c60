"""A BERT-style encoder forward that runs one sub-network on the shared weights of a HF model.

Transformers 5 no longer takes a ``head_mask`` nor prunes heads, so the super-network runs the
encoder layers itself, reading the parameters of the HuggingFace modules. The sub-network is
first compiled into a :class:`LayerPlan` per layer; the forward then has a single code path:

- ``"slice"`` plans carry the kept weight rows/columns (a slice view when the kept heads or units
  are contiguous, an index tensor otherwise), so pruned heads and units cost no compute;
- ``"mask"`` plans keep the full weights and carry 0/1 scales that multiply the per-head context
  and the FFN activations: the naive reference the slice mode is checked and benchmarked against.

In both modes a layer with no kept head skips its attention block and one with no kept unit skips
its FFN block: the residual stream passes through unchanged (no bias, no LayerNorm).

Families beyond BERT describe their layers with the same :class:`LayerModules`, using its optional
parts: fused projections as :class:`LinearPart` views (``Wqkv``, a gated ``Wi``), a gated FFN's
second input projection (``ffn_up``), pre-norm blocks (``pre_norm``), and an ``attend`` function
for attention that is more than scaled dot products (rotary embeddings, sliding windows, relative
positions). ``attend`` receives only the kept heads' queries, keys and values, so slicing still
holds for such families.

Decoders use the same forward: ``SubnetEncoder(..., causal=True)`` adds a causal mask to the
padding mask, ``parallel_residual`` layers (GPT-NeoX) add attention and FFN outputs of the same
input, and grouped-query attention (Llama-family) reads the key/value rows of the kept groups only
(:attr:`LayerPlan.kv_rows`), each shared by the kept query heads of its group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasprune.subnet import ModelShape, SubNetwork

MODES = ("slice", "mask")

# Which output features of a projection are kept: None = all of them.
Selector = Union[None, slice, torch.Tensor]


class LinearPart:
    """Part ``part`` of ``parts`` equal chunks of a fused linear layer's output features.

    ``weight`` and ``bias`` are views of the fused parameters, so reading, slicing, counting and
    permuting a part (in place) act on the shared weights, as they do for a plain ``nn.Linear``.
    """

    def __init__(self, linear: nn.Linear, part: int, parts: int):
        if linear.out_features % parts:
            raise ValueError(f"{linear.out_features} output features do not split into {parts} parts")
        self.linear, self.part, self.parts = linear, part, parts
        self.out_features = linear.out_features // parts
        self.in_features = linear.in_features

    def _chunk(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.narrow(0, self.part * self.out_features, self.out_features)

    @property
    def weight(self) -> torch.Tensor:
        return self._chunk(self.linear.weight)

    @property
    def bias(self) -> torch.Tensor | None:
        return None if self.linear.bias is None else self._chunk(self.linear.bias)


Linear = Union[nn.Linear, LinearPart]


class AttendFunction(Protocol):
    """Attention of the kept heads: ``[N, h, T, dh]`` queries and ``[N, h_kv, T, dh]`` keys and
    values -> ``[N, h, T, dh]`` context. Without GQA ``h_kv == h``; with it, the kept query heads
    come group by group, ``h / h_kv`` per kept key/value head (``enable_gqa`` of SDPA). ``ext_mask``
    is additive; in a causal encoder it already holds the causal mask, and it is None when there is
    no padding, where the function must attend causally itself (SDPA ``is_causal=True``).

    ``heads`` selects the kept heads' features (as :attr:`LayerPlan.head_rows`), for families whose
    attention reads more per-head weights (relative-position projections).
    """

    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        ext_mask: torch.Tensor | None,
        dropout_p: float,
        scale: float,
        heads: "Selector",
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class LayerModules:
    """The HF modules of one encoder layer that the forward reads, named by role.

    The required fields describe a BERT layer (post-norm: ``norm(x + block(x))``). Other families
    set the optional ones: ``ffn_up`` for a gated FFN (``activation(ffn_in(x)) * ffn_up(x)``; a
    unit is a pair of rows), ``ffn_inner_dropout`` for dropout before the output projection,
    ``pre_norm`` for ``x + block(norm(x))``, ``attend`` for attention other than scaled dot
    products with an additive mask, and ``head_projections`` for further projections with
    ``head_dim`` output rows per head that ``attend`` reads (DeBERTa's separate relative-position
    key and query projections): counted, exported and rewired with the head.

    Decoders: ``parallel_residual`` for ``x + attn(attn_norm(x)) + ffn(ffn_norm(x))`` (GPT-NeoX;
    with ``pre_norm``), and ``attn_fixed_modules`` for parameters the attention block holds whole
    while it keeps any head (Qwen3's per-head-dim ``q_norm``/``k_norm``), so counting stays exact.
    Under GQA ``key`` and ``value`` have ``kv_heads * head_dim`` output rows.
    """

    query: Linear
    key: Linear
    value: Linear
    attn_probs_dropout: nn.Module
    attn_out: nn.Linear
    attn_out_dropout: nn.Module
    attn_norm: nn.Module
    ffn_in: Linear
    activation: Callable[[torch.Tensor], torch.Tensor]
    ffn_out: nn.Linear
    ffn_out_dropout: nn.Module
    ffn_norm: nn.Module
    ffn_up: Linear | None = None
    ffn_inner_dropout: nn.Module | None = None
    pre_norm: bool = False
    attend: AttendFunction | None = None
    head_projections: tuple[Linear, ...] = ()
    parallel_residual: bool = False
    attn_fixed_modules: tuple[nn.Module, ...] = ()


@dataclass(frozen=True)
class LayerPlan:
    """How to run one layer: kept counts, which weights to read and (mask mode) the 0/1 scales.

    ``head_rows`` select the query rows (and output-projection columns) of the kept heads;
    ``kv_rows`` the key/value rows of the kept key/value heads (``num_kv_heads`` of them; 0 means
    as many as query heads, i.e. ``kv_rows`` is ``head_rows``: no GQA).
    """

    num_heads: int
    num_units: int
    head_rows: Selector = None
    unit_rows: Selector = None
    head_scale: torch.Tensor | None = None
    unit_scale: torch.Tensor | None = None
    kv_rows: Selector = None
    num_kv_heads: int = 0

    @property
    def key_rows(self) -> Selector:
        """The key/value rows to read: ``kv_rows`` under GQA, else ``head_rows``."""
        return self.kv_rows if self.num_kv_heads else self.head_rows


def head_feature_indices(heads: Sequence[int] | np.ndarray, head_dim: int) -> np.ndarray:
    """The output features of Q, K and V (= input features of the attention output projection)
    that belong to ``heads``, head by head in the given order: ``[len(heads) * head_dim]``."""
    heads = np.asarray(heads, dtype=np.int64)
    return (heads[:, None] * head_dim + np.arange(head_dim)[None, :]).reshape(-1)


def _selector(kept: np.ndarray, width: int, device: torch.device) -> Selector:
    """Rows of a projection that belong to the kept groups (heads: width=head_dim, units: 1)."""
    idx = np.flatnonzero(kept)
    if len(idx) == len(kept):
        return None
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
        # A contiguous run (a prefix in "first k" spaces) is a view: no gather, no copy.
        return slice(int(idx[0]) * width, (int(idx[-1]) + 1) * width)
    return torch.as_tensor(head_feature_indices(idx, width), dtype=torch.long, device=device)


def compile_plan(
    subnet: SubNetwork, shape: ModelShape, mode: str, device: torch.device, dtype: torch.dtype
) -> list[LayerPlan]:
    """Turn a sub-network into per-layer plans on ``device`` for the given ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    plans = []
    kv_kept = shape.kv_mask(subnet.head_mask) if shape.grouped else None
    for layer in range(shape.num_layers):
        heads, units = subnet.head_mask[layer], subnet.unit_mask[layer]
        n_heads, n_units = int(heads.sum()), int(units.sum())
        if mode == "slice":
            kv = {}
            if kv_kept is not None and n_heads:
                # Only the groups that keep a query head need their key/value rows.
                kv = {"kv_rows": _selector(kv_kept[layer], shape.head_dim, device),
                      "num_kv_heads": int(kv_kept[layer].sum())}
            plans.append(
                LayerPlan(
                    num_heads=n_heads,
                    num_units=n_units,
                    head_rows=_selector(heads, shape.head_dim, device) if n_heads else None,
                    unit_rows=_selector(units, 1, device) if n_units else None,
                    **kv,
                )
            )
        else:
            plans.append(
                LayerPlan(
                    num_heads=n_heads,
                    num_units=n_units,
                    head_scale=None if heads.all() else torch.tensor(heads, dtype=dtype, device=device),
                    unit_scale=None if units.all() else torch.tensor(units, dtype=dtype, device=device),
                    # All query heads run (scaled), so all key/value heads do.
                    num_kv_heads=shape.kv_heads if shape.grouped else 0,
                )
            )
    return plans


def scaled_plan(
    subnet: SubNetwork, head_scale: torch.Tensor, unit_scale: torch.Tensor, num_kv_heads: int = 0
) -> list[LayerPlan]:
    """Mask-mode plans whose scales are the given real-valued (possibly differentiable) tensors,
    head ``[L, H]`` and unit ``[L, I]``, or ``[N, L, H]`` and ``[N, L, I]`` with a scale per
    sequence; the layer structure follows ``subnet``. Every key/value
    head runs: ``num_kv_heads`` of them under GQA (``ModelShape.num_kv_heads``), 0 without.

    A layer that keeps no head (unit) of ``subnet`` skips its attention (FFN) block exactly as the
    binary sub-network does, instead of running it with zero scales, which would still add the
    block's bias and LayerNorm.
    """
    heads, units = subnet.heads_per_layer, subnet.units_per_layer
    return [
        LayerPlan(
            num_heads=int(heads[i]),
            num_units=int(units[i]),
            head_scale=head_scale[..., i, :],
            unit_scale=unit_scale[..., i, :],
            num_kv_heads=num_kv_heads,
        )
        for i in range(subnet.num_layers)
    ]


def linear_rows(x: torch.Tensor, linear: Linear, rows: Selector) -> torch.Tensor:
    """``linear(x)`` restricted to the selected output features."""
    weight, bias = linear.weight, linear.bias
    if isinstance(rows, slice):
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    elif rows is not None:
        weight = weight.index_select(0, rows)
        bias = None if bias is None else bias.index_select(0, rows)
    return F.linear(x, weight, bias)


def _linear_cols(x: torch.Tensor, linear: nn.Linear, cols: Selector) -> torch.Tensor:
    """``linear`` applied to the selected input features only; the bias stays whole."""
    weight = linear.weight
    if isinstance(cols, slice):
        weight = weight[:, cols]
    elif cols is not None:
        weight = weight.index_select(1, cols)
    return F.linear(x, weight, linear.bias)


def dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    ext_mask: torch.Tensor | None,
    dropout_p: float,
    scale: float,
    is_causal: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention of the kept heads with an additive mask (or ``is_causal``, where
    SDPA masks causally itself and may pick a fused kernel). Keys and values with fewer heads than
    the queries are shared by groups of query heads (GQA)."""
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=ext_mask, dropout_p=dropout_p, scale=scale, is_causal=is_causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )


def causal_mask(
    ext_mask: torch.Tensor | None, length: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``ext_mask`` (additive, ``[N, 1, 1, T]`` or None) that also hides later tokens from each
    query: ``[N or 1, 1, T, T]``."""
    positions = torch.arange(length, device=device)
    later = positions[None, :] > positions[:, None]
    mask = torch.zeros((length, length), dtype=dtype, device=device).masked_fill(later, torch.finfo(dtype).min)
    mask = mask.view(1, 1, length, length)
    # Adding two minima would overflow to -inf (NaNs for a padding query that sees no token); the
    # minimum already means "never attend".
    return mask if ext_mask is None else (ext_mask + mask).clamp_min(torch.finfo(dtype).min)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The second half of the features, negated, then the first: rotary embeddings' 90-degree turn."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of the first ``cos.shape[-1]`` features of ``[N, h, T, dh]`` (all of
    them in most families; a fraction in GPT-NeoX, ``rotary_pct``); the other features pass unchanged."""
    rotary = cos.shape[-1]
    if rotary == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    turned, passed = x[..., :rotary], x[..., rotary:]
    return torch.cat((turned * cos + rotate_half(turned) * sin, passed), dim=-1)


def rotary_from_start(rotary: nn.Module, x: torch.Tensor, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` ``[1, 1, T, d]`` of a HF rotary-embedding module at positions 0..T-1 of
    ``x [N, h, T, dh]``: the super-network runs whole sequences without a cache, and HF does the
    same whatever the padding. ``args`` go to the module after the positions (ModernBERT's layer type)."""
    positions = torch.arange(x.shape[-2], device=x.device).unsqueeze(0)
    cos, sin = rotary(x, positions, *args)
    return cos.unsqueeze(1), sin.unsqueeze(1)


class SubnetEncoder:
    """Runs the encoder (or decoder) layers of a HF model under a compiled plan."""

    def __init__(self, layers: Sequence[LayerModules], shape: ModelShape, causal: bool = False):
        self.layers = list(layers)
        self.shape = shape
        self.scale = shape.head_dim**-0.5
        self.causal = causal

    def forward(
        self, hidden: torch.Tensor, ext_mask: torch.Tensor | None, plan: Sequence[LayerPlan]
    ) -> torch.Tensor:
        """Run all layers; ``ext_mask`` is additive and broadcasts to ``[B, heads, T, T]``."""
        # Without padding a causal encoder passes no mask: SDPA's is_causal (and its fused kernels)
        # does the masking; ``attend`` functions get ext_mask None and must do the same.
        is_causal = self.causal and ext_mask is None
        if self.causal and ext_mask is not None:
            ext_mask = causal_mask(ext_mask, hidden.shape[-2], hidden.dtype, hidden.device)
        for modules, layer_plan in zip(self.layers, plan):
            if modules.parallel_residual:
                # GPT-NeoX: both blocks read the same input; a skipped block adds nothing.
                out = hidden
                if layer_plan.num_heads:
                    out = out + self._attention(hidden, ext_mask, modules, layer_plan, is_causal)
                if layer_plan.num_units:
                    out = out + self._ffn(hidden, modules, layer_plan)
                hidden = out
                continue
            if layer_plan.num_heads:
                out = self._attention(hidden, ext_mask, modules, layer_plan, is_causal)
                hidden = hidden + out if modules.pre_norm else modules.attn_norm(out + hidden)
            if layer_plan.num_units:
                out = self._ffn(hidden, modules, layer_plan)
                hidden = hidden + out if modules.pre_norm else modules.ffn_norm(out + hidden)
        return hidden

    __call__ = forward

    def _attention(
        self,
        x: torch.Tensor,
        ext_mask: torch.Tensor | None,
        m: LayerModules,
        plan: LayerPlan,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """The attention block's output before the residual connection."""
        batch, length, _ = x.shape
        source = m.attn_norm(x) if m.pre_norm else x
        split = (batch, length, -1, self.shape.head_dim)
        q = linear_rows(source, m.query, plan.head_rows).view(split).transpose(1, 2)
        k = linear_rows(source, m.key, plan.key_rows).view(split).transpose(1, 2)
        v = linear_rows(source, m.value, plan.key_rows).view(split).transpose(1, 2)
        dropout = m.attn_probs_dropout
        # Families without attention-probability dropout hand an nn.Identity, which has no ``p``.
        dropout_p = getattr(dropout, "p", 0.0) if dropout.training else 0.0
        if m.attend is None:
            context = dot_product_attention(q, k, v, ext_mask, dropout_p, self.scale, is_causal)
        else:
            context = m.attend(q, k, v, ext_mask, dropout_p, self.scale, plan.head_rows)
        if plan.head_scale is not None:
            # [H], or [N, H] with a scale per sequence (see SuperNetwork.scaled)
            context = context * plan.head_scale.to(context.dtype)[..., None, None]
        context = context.transpose(1, 2).reshape(batch, length, -1)
        return m.attn_out_dropout(_linear_cols(context, m.attn_out, plan.head_rows))

    def _ffn(self, x: torch.Tensor, m: LayerModules, plan: LayerPlan) -> torch.Tensor:
        """The FFN block's output before the residual connection."""
        source = m.ffn_norm(x) if m.pre_norm else x
        inner = m.activation(linear_rows(source, m.ffn_in, plan.unit_rows))
        if m.ffn_up is not None:
            inner = inner * linear_rows(source, m.ffn_up, plan.unit_rows)
        if plan.unit_scale is not None:
            inner = inner * plan.unit_scale.to(inner.dtype).unsqueeze(-2)
        if m.ffn_inner_dropout is not None:
            inner = m.ffn_inner_dropout(inner)
        return m.ffn_out_dropout(_linear_cols(inner, m.ffn_out, plan.unit_rows))
