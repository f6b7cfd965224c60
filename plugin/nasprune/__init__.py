"""nasprune: prune fine-tuned language models by multi-objective neural architecture search.

``import nasprune`` is light (no torch, transformers or matplotlib), so that ``nasprune.search``
serves a Syne Tune user's own ``Tuner``. It still registers the pruned model classes with the
``transformers`` Auto classes, as soon as ``transformers`` is imported (:mod:`nasprune.autoclasses`).
"""

from nasprune.autoclasses import register_when_transformers_is_imported
from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork

register_when_transformers_is_imported()

__version__ = "0.1.0"
__all__ = ["NaspruneError", "ModelShape", "SubNetwork", "__version__"]
