"""Minor page faults per repeated training step, glibc's default allocator vs keep_freed_memory.

The figure that used to be a unit test: page-fault counts depend on what else the kernel is
doing (a busy neighbour moved the default from 15,300 to 608 per step), so it is measured here,
side by side in one run, and kept in RESULTS.md. Each side runs in a fresh interpreter (the
thresholds are process-wide and glibc adapts them as blocks are freed), interleaved.

    python benchmarks/page_faults.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

STEP = """
import resource, sys, torch
from nas.measure.cpu_allocator import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
torch.set_num_threads(1)
conv = torch.nn.Conv2d(24, 96, 3, padding=1)
x = torch.randn(8, 24, 64, 64, requires_grad=True)   # a block's input at the CPU timing shape
def step():
    torch.nn.functional.silu(conv(x)).mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    default, kept = [], []
    for _ in range(args.rounds):
        default.append(faults_per_step("default"))
        kept.append(faults_per_step("keep"))
    d, k = statistics.median(default), statistics.median(kept)
    print(f"default: {d:,.0f} faults/step (rounds {[round(v) for v in default]})")
    print(f"kept:    {k:,.0f} faults/step (rounds {[round(v) for v in kept]})")
    print(f"kept / default: {k / d:.4f}" if d else "default made no faults: nothing to compare")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
