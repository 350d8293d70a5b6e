"""keep_freed_memory keeps large freed blocks on the heap, and release_freed_memory undoes it.

What the code controls is asserted, not what it buys: glibc's own bookkeeping (`mallinfo2`:
how many blocks are served by `mmap`) says where a block of a given size comes from, which does
not depend on what else the machine does. The page faults this saves per timed step depend on
the kernel's state and are measured side by side in `benchmarks/page_faults.py` instead.

Each case runs in its own interpreter: the thresholds are process-wide.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, sys
from nas.measure.cpu_allocator import keep_freed_memory, release_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def served_by_mmap(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped == 1

BLOCK = 4 * 1024 * 1024  # a part's activation at the CPU timing shape is a few MiB
kept = keep_freed_memory()
assert keep_freed_memory() is kept  # asked for once, remembered
out = [kept, served_by_mmap(BLOCK), release_freed_memory(), served_by_mmap(BLOCK)]
print(" ".join(map(str, out)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt thresholds are glibc's (Linux)")
def test_freed_blocks_stay_on_the_heap_while_kept_and_go_back_once_released() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    kept, mmapped_while_kept, released, mmapped_after = out.stdout.split()
    assert kept == "True" and released == "True"
    assert mmapped_while_kept == "False"  # kept: served from the heap, reused by the next step
    assert mmapped_after == "True"  # undone: glibc's 128 KiB threshold maps it again


def test_warm_up_applies_it_before_the_first_cpu_timing(monkeypatch) -> None:
    import torch

    from nas.measure import costs as measure
    from nas.measure import cpu_allocator

    monkeypatch.setattr(measure, "_warm_devices", set())  # as in a fresh process
    monkeypatch.setattr(cpu_allocator, "_applied", None)
    measure.warm_up_process(torch.device("cpu"))
    assert cpu_allocator._applied is not None  # asked for before any timing
