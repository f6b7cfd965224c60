"""Where standard-NAS trials keep their folders (checkpoints, error logs): a local or shared
folder, or any URI that pyarrow's filesystems accept (``s3://``, ``gs://``, ``hdfs://``,
``file://``), which is what Ray's own storage accepts too.

A plain path is used as it is: on one machine, or on a folder every node mounts, a trial reads
and writes its checkpoint in place. A URI is reached through :mod:`pyarrow.fs`: a trial works
on a local copy of its checkpoint folder (:func:`download_folder`) and uploads each epoch's
checkpoint before it reports it (:func:`upload_checkpoint`), so that a trial retried on another
node finds the last checkpoint its predecessor reported.

pyarrow loads only when a URI is used.
"""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path
from typing import Any

from nasprune.files import write_text_atomic
from nasprune.snas.protocol import CHECKPOINT_POINTER


def is_uri(location: str) -> bool:
    """Whether ``location`` names a storage URI (``scheme://...``) rather than a plain path."""
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for a path or a URI."""
    if is_uri(location):
        return posixpath.join(location.rstrip("/"), *parts)
    return str(Path(location, *parts))


def _filesystem(location: str) -> tuple[Any, str]:
    # pyarrow is what Ray's storage uses: loaded only for a URI.
    from pyarrow import fs

    return fs.FileSystem.from_uri(location)


def read_text(location: str) -> str:
    """The text of a file. :raises OSError: when it cannot be read (for instance, it is missing)."""
    if not is_uri(location):
        return Path(location).read_text(errors="replace")
    filesystem, path = _filesystem(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode(errors="replace")


def write_text(location: str, text: str) -> None:
    """Write a file whole (atomically on a local disk; an object store replaces objects whole)."""
    if not is_uri(location):
        write_text_atomic(text, location)
        return
    filesystem, path = _filesystem(location)
    filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode())


def folder_exists(location: str) -> bool:
    """Whether ``location`` is a folder holding at least one file."""
    if not is_uri(location):
        return Path(location).is_dir() and any(Path(location).iterdir())
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    return bool(filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True)))


def copy_folder(source: str, target: str) -> None:
    """Copy a folder (on the same storage) whole."""
    if not is_uri(source):
        shutil.copytree(source, target)
        return
    from pyarrow import fs

    source_fs, source_path = _filesystem(source)
    target_fs, target_path = _filesystem(target)
    target_fs.create_dir(target_path, recursive=True)
    fs.copy_files(source_path, target_path, source_filesystem=source_fs, destination_filesystem=target_fs)


def delete_folder(location: str) -> None:
    """Delete a folder and what it holds; a missing folder is fine."""
    if not is_uri(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    filesystem, path = _filesystem(location)
    try:
        filesystem.delete_dir(path)
    except FileNotFoundError:
        pass


def download_folder(location: str, local: Path) -> None:
    """Copy the folder at a URI into the local folder ``local`` (nothing when it is missing)."""
    from pyarrow import fs

    if folder_exists(location):
        filesystem, path = _filesystem(location)
        local.mkdir(parents=True, exist_ok=True)
        fs.copy_files(path, str(local), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())


def upload_checkpoint(local: Path, location: str) -> None:
    """Bring the checkpoint at a URI up to the local trial checkpoint ``local``.

    A checkpoint is a folder per saved epoch and the pointer ``latest.json`` naming the complete
    one (:class:`nasprune.snas.worker.TrialCheckpoint`). The new epoch folders go up first and the
    pointer last, so that a trial cut off while uploading leaves the pointer on the previous,
    complete epoch; epoch folders the local checkpoint dropped are deleted after. (The local
    checkpoint keeps only its last epoch, so this uploads one folder; it is uploaded even when a
    folder of that name is there already, which may be one cut off by a failed upload.)
    """
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    local_fs = fs.LocalFileSystem()
    remote = {info.base_name for info in filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))}
    folders = {entry.name for entry in local.iterdir() if entry.is_dir()}
    for name in sorted(folders):
        filesystem.create_dir(posixpath.join(path, name), recursive=True)
        fs.copy_files(str(local / name), posixpath.join(path, name),
                      source_filesystem=local_fs, destination_filesystem=filesystem)
    if (local / CHECKPOINT_POINTER).is_file():
        fs.copy_files(str(local / CHECKPOINT_POINTER), posixpath.join(path, CHECKPOINT_POINTER),
                      source_filesystem=local_fs, destination_filesystem=filesystem)
    for name in sorted(remote - folders - {CHECKPOINT_POINTER}):
        filesystem.delete_dir(posixpath.join(path, name))
