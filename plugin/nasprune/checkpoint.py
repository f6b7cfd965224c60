"""Super-network checkpoints: ``save_pretrained`` weights, the tokenizer and ``nasprune.json``.

A training run writes ``OUTPUT/epoch-<n>/`` after every epoch, each written to a temporary
folder first and renamed into place, so a crash never leaves half a checkpoint (and the next
run into that folder clears what an interrupted save left behind). The ``nasprune.json`` file
holds what a search needs to reload the super-network: the task and its data options, the
search space and the sequence length, and a *fingerprint*: a sha256 over the weights file and
every setting that changes a result, so a reader can tell that the weights are the ones the
settings produced and that nobody changed either since.

Nothing here unpickles: weights are safetensors, and the trainer's optimizer and generator state
is a safetensors file of tensors beside a JSON file of everything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasprune.errors import NaspruneError
from nasprune.files import replace_folder

logger = logging.getLogger("nasprune")

META_FILE = "nasprune.json"
#: The trainer's tensors (optimizer moments, generator states) and the rest of its state.
TRAINING_STATE_TENSORS = "training_state.safetensors"
TRAINING_STATE_JSON = "training_state.json"
#: The pickle file older versions wrote: never loaded, since unpickling a file can run any code.
LEGACY_TRAINING_STATE_FILE = "training_state.pt"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
FORMAT_VERSION = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
#: What an interrupted :func:`save_checkpoint` leaves: the new epoch half-written, or the old one
#: moved aside just before the new one was renamed into place.
_SAVE_LEFTOVER = re.compile(r"^\.(epoch-\d+)\.(tmp|old)-\d+$")
#: ``nasprune.json`` fields that describe a run rather than determine its weights.
_NOT_SETTINGS = ("history", "fingerprint", "format_version")
_HASH_CHUNK_BYTES = 1 << 20


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
    #: sha256 over the weights and :meth:`settings` (see :func:`checkpoint_fingerprint`);
    #: None only in checkpoints written before fingerprints existed
    fingerprint: str | None = None
    format_version: int = FORMAT_VERSION

    def settings(self) -> dict[str, Any]:
        """Everything recorded that changes the weights or the numbers measured on them."""
        settings = {k: v for k, v in asdict(self).items() if k not in _NOT_SETTINGS}
        if isinstance(settings.get("rewiring"), dict):
            # How long rewiring took is a measurement, like the history's epoch seconds.
            settings["rewiring"] = {k: v for k, v in settings["rewiring"].items() if k != "seconds"}
        return settings

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


def weight_files(directory: Path) -> list[Path]:
    """The safetensors weights of a ``save_pretrained`` folder: one file, or the shards its index names."""
    directory = Path(directory)
    if (directory / WEIGHTS_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    index = directory / WEIGHTS_INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise NaspruneError(f"corrupt weights index {index}: {err}") from None
        return [directory / name for name in shards]
    raise NaspruneError(f"{directory} holds no {WEIGHTS_FILE}: the checkpoint's weights are missing")


def checkpoint_fingerprint(directory: Path, info: CheckpointInfo) -> str:
    """sha256 over the canonical JSON of ``info.settings()`` and the bytes of the weight files.

    Each file is read once, in chunks: a few seconds for BERT-base, nothing next to training.
    """
    digest = hashlib.sha256(b"nasprune checkpoint fingerprint v1\n")
    digest.update(json.dumps(info.settings(), sort_keys=True, separators=(",", ":")).encode())
    for path in weight_files(directory):
        digest.update(b"\n" + path.name.encode() + b"\n")
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
        except FileNotFoundError:
            raise NaspruneError(f"weights file {path} is missing") from None
    return digest.hexdigest()


def verify_checkpoint(directory: Path, info: CheckpointInfo) -> None:
    """Raise :class:`NaspruneError` unless the weights and settings still match the fingerprint."""
    if info.fingerprint is None:
        logger.warning("%s was written before checkpoints had fingerprints: its weights cannot be verified", directory)
        return
    if checkpoint_fingerprint(directory, info) != info.fingerprint:
        files = ", ".join(p.name for p in weight_files(directory))
        raise NaspruneError(
            f"checkpoint {directory} does not match its fingerprint: {files} or the settings in {META_FILE} "
            "changed after it was saved; restore the original files or train it again"
        )


def load_checkpoint(path: str | os.PathLike) -> tuple[Path, CheckpointInfo]:
    """Resolve a checkpoint (see :func:`resolve_checkpoint`), load its info and verify its weights."""
    directory = resolve_checkpoint(path)
    info = CheckpointInfo.load(directory)
    verify_checkpoint(directory, info)
    return directory, info


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
    """Write a checkpoint atomically: to a temporary sibling folder, then rename it into place.

    ``info`` is saved with the fingerprint of the weights just written; returns the folder.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace(info, fingerprint=checkpoint_fingerprint(tmp, info)).save(tmp)
    if training_state is not None:
        save_training_state(tmp, training_state)
    return replace_folder(tmp, directory)


def clean_interrupted_saves(output_dir: Path) -> None:
    """Clear what an interrupted :func:`save_checkpoint` left in ``output_dir``.

    A ``.epoch-N.tmp-<pid>`` folder is a save that never finished: removed. A
    ``.epoch-N.old-<pid>`` folder is the previous ``epoch-N`` moved aside for its replacement:
    removed when ``epoch-N`` exists, else renamed back, so the finished epoch is not lost.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    leftovers = sorted(p for p in output_dir.iterdir() if _SAVE_LEFTOVER.match(p.name) and p.is_dir())
    for path in leftovers:  # ".old-" sorts before ".tmp-": restore before removing
        epoch_name, kind = _SAVE_LEFTOVER.match(path.name).groups()
        final = output_dir / epoch_name
        if kind == "old" and not final.exists() and (path / META_FILE).is_file():
            path.rename(final)
            logger.info("restored %s from an interrupted save", final)
        else:
            shutil.rmtree(path)
            logger.info("removed %s, left by an interrupted save", path)


# --- trainer state: tensors in safetensors, the rest in JSON --------------------------------
# A Trainer.state_dict() nests dicts (some with int keys: optimizer state by parameter index),
# lists, tuples (Adam's betas), numbers, strings and tensors. Tensors go to the safetensors
# file under a generated key; the JSON keeps the structure, with tagged objects for what JSON
# cannot say itself, so loading gives back exactly the types that were saved.
_TENSOR_TAG, _TUPLE_TAG, _ITEMS_TAG = "__tensor__", "__tuple__", "__items__"
_STATE_FORMAT = "nasprune training state v1"


def _encode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        # safetensors stores contiguous, unshared CPU tensors
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR_TAG: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not {_TENSOR_TAG, _TUPLE_TAG, _ITEMS_TAG} & set(value):
            return {k: _encode_state(v, tensors) for k, v in value.items()}
        return {_ITEMS_TAG: [[_encode_state(k, tensors), _encode_state(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode_state(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode_state(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):  # a numpy scalar, e.g. a metric in the history
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in the training state")


def _decode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode_state(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR_TAG in value:
        return tensors[value[_TENSOR_TAG]]
    if _TUPLE_TAG in value:
        return tuple(_decode_state(v, tensors) for v in value[_TUPLE_TAG])
    if _ITEMS_TAG in value:
        return {_decode_state(k, tensors): _decode_state(v, tensors) for k, v in value[_ITEMS_TAG]}
    return {k: _decode_state(v, tensors) for k, v in value.items()}


def save_training_state(directory: str | os.PathLike, state: dict) -> None:
    """Write a trainer's ``state_dict()`` as ``training_state.safetensors`` + ``training_state.json``.

    Both files carry one random id, so a pair from two different saves is never mixed up.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode_state(state, tensors)
    pair_id = uuid.uuid4().hex
    save_file(tensors, str(directory / TRAINING_STATE_TENSORS), metadata={"pair_id": pair_id})
    document = {"format": _STATE_FORMAT, "pair_id": pair_id, "state": tree}
    (directory / TRAINING_STATE_JSON).write_text(json.dumps(document))


def load_training_state(directory: str | os.PathLike) -> dict | None:
    """A trainer state saved by :func:`save_training_state`, on the CPU; None when there is none.

    Neither file is unpickled. A legacy pickled ``training_state.pt`` is refused, never opened.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    tensors_path, json_path = directory / TRAINING_STATE_TENSORS, directory / TRAINING_STATE_JSON
    if not tensors_path.is_file() and not json_path.is_file():
        if (directory / LEGACY_TRAINING_STATE_FILE).is_file():
            raise NaspruneError(
                f"{directory / LEGACY_TRAINING_STATE_FILE} is a training state in an unsafe old format "
                "(a pickle, which can run code when loaded) and is not loaded; "
                "pass --overwrite-output-dir to start afresh"
            )
        return None
    try:
        document = json.loads(json_path.read_text())
        with safe_open(str(tensors_path), framework="pt", device="cpu") as stream:
            pair_id = (stream.metadata() or {}).get("pair_id")
            tensors = {key: stream.get_tensor(key) for key in stream.keys()}
        if document.get("format") != _STATE_FORMAT or document.get("pair_id") != pair_id:
            raise ValueError(f"{json_path.name} and {tensors_path.name} are not from one save")
        return _decode_state(document["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as err:
        raise NaspruneError(
            f"corrupt training state in {directory}: {err}; pass --overwrite-output-dir to start afresh"
        ) from None


def drop_training_state(directory: Path) -> None:
    """Older epochs keep their weights but not their (twice as large) optimizer state."""
    for name in (TRAINING_STATE_TENSORS, TRAINING_STATE_JSON, LEGACY_TRAINING_STATE_FILE):
        (Path(directory) / name).unlink(missing_ok=True)
