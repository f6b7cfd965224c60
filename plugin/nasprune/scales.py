"""Per-head and per-unit scales of a sub-network, and folding them into the weights.

Retraining-free pruning (:mod:`nasprune.baselines.rfp`) tunes the kept masks to real numbers;
``nasprune export`` must cut out the weights that produced a row's error, so it folds the same
values in. Both use this module, so the export (core) does not depend on a baseline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from nasprune.errors import NaspruneError
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, encoder_layers, unwrap

#: Written by ``nasprune baseline --method rfp`` beside its results: each tuned row's mask values,
#: keyed by trial id, so that ``nasprune export`` folds them into the exported weights.
MASK_SCALES_FILE = "mask_scales.json"


@dataclass
class MaskScales:
    """Real-valued mask values: ``head [L, H]`` and ``unit [L, I]`` (0 where pruned)."""

    head: np.ndarray
    unit: np.ndarray

    @classmethod
    def binary(cls, subnet: SubNetwork) -> "MaskScales":
        """The untuned values of ``subnet``: 1 where a head or unit is kept, 0 where pruned."""
        return cls(subnet.head_mask.astype(float), subnet.unit_mask.astype(float))

    def to_dict(self, subnet: SubNetwork) -> dict:
        """The kept masks' values per layer, in the order of their indices."""
        return {
            "heads": [self.head[i, subnet.head_mask[i]].round(6).tolist() for i in range(subnet.num_layers)],
            "units": [self.unit[i, subnet.unit_mask[i]].round(6).tolist() for i in range(subnet.num_layers)],
        }

    @classmethod
    def from_dict(cls, values: dict, subnet: SubNetwork) -> "MaskScales":
        """The inverse of :meth:`to_dict` (e.g. an entry of the baseline's ``mask_scales.json``).

        :raises NaspruneError: when the values do not fit ``subnet`` (one per kept head and unit)
        """
        scales = cls.binary(subnet)
        try:
            for name, masks, target in (("heads", subnet.head_mask, scales.head), ("units", subnet.unit_mask, scales.unit)):
                layers = values[name]
                if len(layers) != subnet.num_layers:
                    raise ValueError(f"{len(layers)} layers of {name}, the sub-network has {subnet.num_layers}")
                for layer, kept_values in enumerate(layers):
                    kept = np.flatnonzero(masks[layer])
                    if len(kept_values) != len(kept):
                        raise ValueError(f"layer {layer} has {len(kept_values)} {name} values for {len(kept)} kept {name}")
                    target[layer, kept] = np.asarray(kept_values, dtype=float)
        except (KeyError, TypeError, ValueError) as err:
            raise NaspruneError(f"mask scales that do not fit the sub-network: {err}") from None
        if not (np.isfinite(scales.head).all() and np.isfinite(scales.unit).all()):
            raise NaspruneError("mask scales that are not finite numbers")
        return scales


def apply_scales(model: torch.nn.Module, subnet: SubNetwork, scales: MaskScales) -> torch.nn.Module:
    """A copy of ``model`` (HF model or super-network) with tuned mask values folded into its weights.

    Kept head h of layer l scales its columns of the attention output projection, kept unit u its
    column of the FFN output projection; running the binary ``subnet`` on the copy computes the
    tuned masked model exactly. ``model`` is not modified.
    """
    # Copy the HF model, not a super-network: SubNetwork (held by it) refuses deepcopy's setattr.
    tuned = copy.deepcopy(unwrap(model))
    supernet = SuperNetwork(tuned)
    head_dim = supernet.shape.head_dim
    with torch.no_grad():
        for layer, modules in enumerate(encoder_layers(supernet)):
            weight = modules.attn_out.weight
            for head in subnet.head_indices(layer):
                weight[:, head * head_dim : (head + 1) * head_dim] *= float(scales.head[layer, head])
            units = subnet.unit_indices(layer)
            if len(units):
                factor = torch.as_tensor(scales.unit[layer, units], dtype=weight.dtype, device=weight.device)
                modules.ffn_out.weight[:, units] *= factor
    return SuperNetwork(tuned, mode=model.mode) if isinstance(model, SuperNetwork) else tuned
