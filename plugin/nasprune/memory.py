"""Keep a long search from growing its heap without bound.

Every sub-network runs activations of another shape. glibc keeps the freed blocks on a heap
that fragments, so a weight-sharing search over MiniLM grew by about 100 MB per evaluated
sub-network. Handing the free memory back after each sub-network keeps it flat; doing so costs
milliseconds, where serving all large blocks by mmap instead cost minutes of page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows: no malloc_trim, nothing to do
        return None


def release_free_memory() -> bool:
    """Return the heap's free memory to the system; False where the C library cannot."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
