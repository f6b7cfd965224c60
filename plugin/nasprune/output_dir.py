"""Output folders: refuse a path that cannot be a folder, and keep two processes out of one folder.

Every command with ``--output-dir`` checks the path (:func:`check_output_dir`) before any model is
loaded, and holds :func:`lock_output_dir` while it writes there, so that two searches started into
the same folder cannot interleave their journal or overwrite each other's results: the second one
stops at once with one message. The lock is an advisory ``flock`` on a small file, so it is
released by the operating system when its process dies (``kill -9`` included) and never needs
cleaning up by hand.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

from nasprune.errors import NaspruneError

#: The lock file inside a locked folder.
LOCK_FILE = ".nasprune.lock"

# Locks held by this process: lock file -> [descriptor, depth, whether the lock created the
# folder]. flock locks belong to an open file description, so a second open() of the same file in
# this process would be refused like another process; counting the depth makes the lock
# reentrant (``run`` locks, then its search).
_held: dict[Path, list[int]] = {}
_held_guard = threading.Lock()


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` if it is, or can become, a folder; :class:`NaspruneError` if it is a file or
    lies under a file (checked before anything is loaded or written)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NaspruneError(f"--output-dir {path} is a file, not a folder; choose a folder")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NaspruneError(f"--output-dir {path} lies under the file {parent}; choose a folder")
            break
    return path


def lock_path(folder: str | os.PathLike, inside: bool = True) -> Path:
    """The lock file of ``folder``: inside it, or (``inside=False``) beside it, for outputs such as
    an export that are renamed into place as a whole and must not exist beforehand."""
    folder = Path(folder).resolve()  # one lock file per folder, however the path is spelt
    return folder / LOCK_FILE if inside else folder.parent / f".{folder.name}{LOCK_FILE}"


@contextlib.contextmanager
def lock_output_dir(folder: str | os.PathLike, inside: bool = True) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) for the duration of the ``with`` block.

    :param folder: the output folder
    :param inside: keep the lock file in the folder (the default), or beside it (see :func:`lock_path`)
    :raises NaspruneError: when another process holds the lock, or the folder cannot be a folder
    :return: (as the context value) the folder
    """
    folder = check_output_dir(folder)
    path = lock_path(folder, inside)
    with _held_guard:
        if path in _held:
            _held[path][1] += 1
        else:
            created = not path.parent.exists()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise NaspruneError(f"cannot create the output folder {path.parent}: {err.strerror or err}") from None
            try:
                descriptor = _acquire(path, folder)
            except NaspruneError:
                _remove_if_empty(path.parent, created)
                raise
            _held[path] = [descriptor, 1, created]
    try:
        yield folder
    finally:
        with _held_guard:
            entry = _held[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                _release(path, entry[0])
                # A command that failed before writing anything leaves no empty folder behind.
                _remove_if_empty(path.parent, bool(entry[2]))


def _acquire(path: Path, folder: Path) -> int:
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise NaspruneError(f"cannot lock the output folder {folder}: {err.strerror or err}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(descriptor)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise NaspruneError(f"cannot lock the output folder {folder}: {err}") from None
            holder = _holder(path)
            raise NaspruneError(
                f"another nasprune process{holder} is writing to {folder}; wait for it to finish, "
                "or choose another --output-dir"
            ) from None
        # The previous holder may have unlinked the file between our open() and flock(): then we
        # locked a file nobody else will see. Only a lock on the file now at ``path`` counts.
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            return descriptor
        os.close(descriptor)


def _holder(path: Path) -> str:
    """`` (pid N)`` from the lock file, for the message; empty when unreadable."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})"


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        with contextlib.suppress(OSError):  # not empty (or already gone): keep it
            folder.rmdir()


def _release(path: Path, descriptor: int) -> None:
    # Unlink while still holding the lock, so that no folder keeps a stale lock file behind;
    # a process that opened the old file meanwhile notices (see _acquire) and tries again.
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(descriptor)
