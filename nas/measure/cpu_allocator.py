"""Keep freed CPU memory in the process, so a timed training step does not page-fault.

glibc's malloc serves large blocks (from 128 KiB, a threshold it raises as blocks are freed)
with fresh `mmap` pages and gives them back on `free`; the next step touches new pages again.
Timing a part of a network at the CPU timing shape (batch 8, 128 px) measured ~3,000 minor page
faults per step, a cost that depends on the kernel's memory state rather than on the part, and
was seen as whole candidates timed 10-40% slower in one table than in the next
(benchmarks/cost_fidelity.py). Fixing the thresholds keeps those blocks on the heap for reuse,
as CUDA's caching allocator does on a GPU: the same timing then faults ~10 times per step.

The cost is memory that is not handed back to the system until the process ends (the process's
peak stays resident), which is what a training process holds anyway.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's starting value of both thresholds (it then raises the mmap one as blocks are freed)
GLIBC_DEFAULT_THRESHOLD_BYTES = 128 * 1024
# the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX / 2); a block above it is a
# tensor far bigger than any part the timing shape produces
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); False where there is no glibc."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
        if not _applied:
            log.debug("no glibc mallopt here: CPU step times may include page faults")
    return _applied


def release_freed_memory() -> bool:
    """Undo keep_freed_memory: glibc's starting thresholds again, so large blocks go back to the
    system on `free` (glibc no longer raises the mmap threshold by itself once it was set).
    False where there is no glibc."""
    global _applied
    released = _set_thresholds(GLIBC_DEFAULT_THRESHOLD_BYTES, GLIBC_DEFAULT_THRESHOLD_BYTES)
    if released:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand back what was kept: the heap's free top
    _applied = None
    return released


def _set_thresholds(mmap_bytes: int = MMAP_THRESHOLD_BYTES, trim_bytes: int = TRIM_THRESHOLD_BYTES) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt  # glibc only: musl and others have none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return mallopt(_M_MMAP_THRESHOLD, mmap_bytes) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_bytes) == 1
