"""nasprune: prune fine-tuned language models by multi-objective neural architecture search."""

from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
import nasprune.export  # noqa: F401,E402  registers the pruned models with the Auto classes

__version__ = "0.1.0"
__all__ = ["NaspruneError", "ModelShape", "SubNetwork", "__version__"]
