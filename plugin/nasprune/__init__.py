"""nasprune: prune fine-tuned language models by multi-objective neural architecture search."""

from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork

__version__ = "0.1.0"
__all__ = ["NaspruneError", "ModelShape", "SubNetwork", "__version__"]
