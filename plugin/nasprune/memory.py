"""Keep a long search from growing its heap without bound.

Every sub-network runs tensors of another shape. glibc raises its mmap threshold as large
blocks are freed, so those activations end up on the heap, which fragments: a weight-sharing
search over MiniLM grew by about 100 MB per evaluated sub-network. Serving blocks of 1 MiB and
more with mmap returns them to the system when freed, at a cost too small to measure here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def limit_heap_fragmentation() -> bool:
    """Fix glibc's mmap threshold at 1 MiB (once per process); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to tune
        return False
