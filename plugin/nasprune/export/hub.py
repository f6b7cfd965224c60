"""Upload an exported folder to the Hugging Face Hub with ``huggingface_hub``.

The token is found as ``huggingface_hub`` finds it (the ``HF_TOKEN`` environment variable, or the
login saved by ``hf auth login``); nasprune never reads or stores it. Before uploading, the
folder's model card is rewritten to load the model by its repository id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nasprune.errors import NaspruneError
from nasprune.export.card import model_card

#: Written next to the weights by :func:`nasprune.export.export_subnetwork`.
_META_FILE = "nasprune_export.json"


def check_repo_id(repo_id: str) -> None:
    """Refuse a malformed Hub repository id (``owner/name``) before any work is done."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise NaspruneError(f"--push-to-hub {repo_id!r} is not a Hub repository id (owner/name): {err}") from None


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Create (or reuse) the model repository ``repo_id`` and upload ``folder`` to it in one commit.

    :returns: the URL of the commit
    :raises NaspruneError: when the Hub refuses or cannot be reached; the folder stays as it is
    """
    from huggingface_hub import HfApi
    # The transport's HTTPError covers refusals (HfHubHTTPError) and unreachable hosts alike.
    from huggingface_hub.errors import HTTPError

    check_repo_id(repo_id)
    folder = Path(folder)
    meta_path = folder / _META_FILE
    if meta_path.is_file():  # the usage snippet names the repository, not the local folder
        (folder / "README.md").write_text(model_card(json.loads(meta_path.read_text()), repo=repo_id))
    api = HfApi()
    try:
        repo = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=folder, repo_type="model",
            commit_message="Upload a model pruned with nasprune",
        )
    except (HTTPError, OSError, ValueError) as err:  # OSError: offline mode, unreadable files
        raise NaspruneError(
            f"could not upload {folder} to the Hub repository {repo_id}: {err}. The exported folder is "
            f"complete; upload it later with 'hf upload {repo_id} {folder}'"
        ) from None
    return str(getattr(commit, "commit_url", commit))


__all__ = ["check_repo_id", "push_to_hub"]
