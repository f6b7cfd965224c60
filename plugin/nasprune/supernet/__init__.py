"""Super-networks: run any sub-network of a fine-tuned BERT-like model on its shared weights.

Each model family is one module of this package that defines a :class:`FamilyAdapter` subclass
decorated with :func:`register_adapter`; every module here is imported on package import, so
adding a family means adding one file.
"""

import importlib
import pkgutil

from nasprune.supernet.base import (
    TASK_KINDS,
    FamilyAdapter,
    SuperNetwork,
    check_max_seq_length,
    encoder_layers,
    get_adapter,
    has_task_head,
    load_hf_model,
    local_model_folder,
    max_positions,
    register_adapter,
    supported_families,
    unwrap,
)
from nasprune.supernet.encoder import MODES, LayerModules, head_feature_indices

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "MODES",
    "TASK_KINDS",
    "FamilyAdapter",
    "LayerModules",
    "SuperNetwork",
    "check_max_seq_length",
    "encoder_layers",
    "get_adapter",
    "head_feature_indices",
    "has_task_head",
    "load_hf_model",
    "local_model_folder",
    "max_positions",
    "register_adapter",
    "supported_families",
    "unwrap",
]
