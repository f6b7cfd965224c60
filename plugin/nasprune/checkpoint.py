"""Super-network checkpoints: ``save_pretrained`` weights, the tokenizer and ``nasprune.json``.

A training run writes ``OUTPUT/epoch-<n>/`` after every epoch, each written to a temporary
folder first and renamed into place, so a crash never leaves half a checkpoint. The
``nasprune.json`` file holds what a search needs to reload the super-network: the task and
its data options, the search space and the sequence length.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasprune.errors import NaspruneError

META_FILE = "nasprune.json"
TRAINING_STATE_FILE = "training_state.pt"
FORMAT_VERSION = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")


@dataclass
class CheckpointInfo:
    """What ``nasprune.json`` records about a super-network checkpoint."""

    base_model: str
    model_type: str
    task: str | None
    task_kind: str
    num_labels: int
    max_seq_length: int
    search_space: str
    strategy: str
    epoch: int
    data_options: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: set when the start model was rewired: importance kind, source model and permutation
    rewiring: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def save(self, directory: Path) -> None:
        (Path(directory) / META_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> "CheckpointInfo":
        path = Path(directory) / META_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise NaspruneError(f"{directory} is not a nasprune checkpoint: {META_FILE} is missing") from None
        except (json.JSONDecodeError, TypeError) as err:
            raise NaspruneError(f"corrupt checkpoint metadata {path}: {err}") from None


def epoch_checkpoints(output_dir: Path) -> list[Path]:
    """The ``epoch-<n>`` checkpoints in a training output folder, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _EPOCH_DIR.match(p.name)) and (p / META_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder itself, or the latest epoch checkpoint inside a training output folder."""
    path = Path(path)
    if not path.exists():
        raise NaspruneError(f"checkpoint {path} does not exist")
    if (path / META_FILE).is_file():
        return path
    epochs = epoch_checkpoints(path)
    if not epochs:
        raise NaspruneError(
            f"no nasprune checkpoint in {path}: expected {META_FILE} or epoch-<n>/ folders "
            "written by 'nasprune train-supernet' or 'nasprune finetune'"
        )
    return epochs[-1]


def save_checkpoint(
    directory: str | os.PathLike,
    model: Any,
    tokenizer: Any,
    info: CheckpointInfo,
    training_state: dict | None = None,
) -> Path:
    """Write a checkpoint atomically: to a temporary sibling folder, then rename it into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info.save(tmp)
    if training_state is not None:
        torch.save(training_state, tmp / TRAINING_STATE_FILE)
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def drop_training_state(directory: Path) -> None:
    """Older epochs keep their weights but not their (twice as large) optimizer state."""
    (Path(directory) / TRAINING_STATE_FILE).unlink(missing_ok=True)


def load_training_state(directory: Path) -> dict | None:
    path = Path(directory) / TRAINING_STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which one
        raise NaspruneError(f"corrupt training state {path}: {err}") from None
