"""``import nasprune`` registers the pruned models with the ``transformers`` Auto classes, lazily.

An exported model loads with ``AutoModelForSequenceClassification.from_pretrained(path)`` after
``import nasprune`` (the README and every exported model card say so). Registering needs
``transformers`` and ``torch``: seconds of import time that a Syne Tune user who only wants
:mod:`nasprune.search` should not pay. So :func:`register_when_transformers_is_imported` registers
at once when ``transformers`` is already imported, and otherwise right after its first import: a
finder on ``sys.meta_path`` wraps the loader of ``transformers``, and removes itself once that
loader has run. Nothing else is imported or changed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Sequence

_TRANSFORMERS = "transformers"


def register() -> None:
    """Register the pruned model classes now (imports ``transformers`` and ``torch``)."""
    # Importing the package registers them; it is heavy, hence imported only here.
    importlib.import_module("nasprune.pruned")


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of ``transformers``, then :func:`register`."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TransformersFinder)]
        register()

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self._loader, name)


class _TransformersFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands ``transformers``' own spec on with a registering loader.

    It stays until that loader has run: libraries that only ask whether ``transformers`` is
    installed (``importlib.util.find_spec``) get a spec they never load.
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TRANSFORMERS or self._finding:
            return None
        self._finding = True  # the find_spec below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def register_when_transformers_is_imported() -> None:
    """Register the pruned model classes with the Auto classes as soon as ``transformers`` is
    imported (now, if it already is). Idempotent."""
    if _TRANSFORMERS in sys.modules:
        register()
    elif not any(isinstance(finder, _TransformersFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TransformersFinder())
