"""glibc's malloc told to keep the memory a process frees for its next allocations.

A training step on the CPU allocates and frees its activations and gradients: hundreds of
tensors of kilobytes to megabytes, the same sizes step after step. glibc hands freed memory at
the top of its heaps back to the system once more than its trim threshold is free there (128 KB
until its dynamic thresholds have grown), and serves blocks above its mmap threshold with fresh
mappings that it unmaps on free. Each step then faulted its tensors' pages in again, zeroed by
the kernel one 4 KB page at a time: about 1,400 page faults a step for the LoRA steps of the
benchmark's tiny causal LM, 7-8% of their time (`bench/allocator.py`).

`reuse_freed_memory()` sets both thresholds once, for the rest of the process, where glibc's own
dynamic adjustment stops (32 MB for the mmap threshold, twice that for trimming): blocks below
32 MB come from the heap and return to it, and the next step finds them there (a handful of
faults a step). Larger blocks (a large vocabulary's logits, a large model's weights) are still
mapped and unmapped. What a heap keeps is what the step before used, so the peak memory does
not grow; up to 64 MB stays in each of the process's heaps after training instead of being
handed back. Nothing changes in what is computed. Linux with glibc only: elsewhere (macOS,
musl) nothing is set."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's `mallopt` parameters
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for its dynamic mmap threshold on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc pairs with it
log = logging.getLogger(__name__)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def reuse_freed_memory() -> bool:
    """Keep freed memory for reuse for the rest of this process (see the module docstring);
    whether glibc took the setting. Only the first call does anything."""
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not done:
        log.debug("glibc did not take the malloc thresholds; its defaults stand")
    return done
