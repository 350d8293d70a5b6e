"""The same 20-trial tiny search with the Optuna backend and the Ray backend (local, same
concurrency): prints the Ray/Optuna wall-time ratio and Ray's orchestration overhead per trial.

Both runs: `nas search --space tiny --budget 20`, 2 trials at a time with one torch thread each
(Optuna: --workers 2; Ray: a local Ray, --max-concurrent 2 --cpus-per-trial 1), no early stopping
(--pruner none / --no-asha) so both run the same amount of training. Overhead is read from the
Ray run's trial records (times taken inside the trial actors):

- start-up: from launching `nas search` to the first trial starting (ray.init, the reference
  measured on the cluster, Tune and the first actors);
- hand-off per trial: on each actor, the gap from one trial's end to the next one's start
  (Tune result handling, the searcher, the driver writing the record, actor reset);
- in-trial: time in the trial function outside `evaluate` (cost pre-measurement, reports,
  checkpoints).

The local Ray runs inside a network namespace with only loopback when `unshare -n` is allowed,
with its own token, so it never listens on the machine's interfaces or writes ~/.ray.

    OMP_NUM_THREADS=1 python benchmarks/ray_vs_optuna.py [--budget 20] [--runs-dir /tmp/nas-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMON = ["--space", "tiny", "--quiet", "--seed", "0"]


def _env(folder: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    token = folder / "ray_token"
    token.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    return env


def _loopback_only(argv: list[str]) -> list[str]:
    """Run argv in a fresh network namespace that has only loopback, when allowed."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        script = 'ip link set lo up && exec "$@"'
        return ["unshare", "-n", "sh", "-c", script, "sh", *argv]
    print("note: cannot create a network namespace; the local Ray binds to 127.0.0.1 only", file=sys.stderr)
    return argv


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    start_wall, start = time.time(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, start_wall


def _records(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run / "trials").glob("*/metrics.json"))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="nas-bench-"))
    runs.mkdir(parents=True, exist_ok=True)
    env = _env(runs)
    nas = [sys.executable, "-m", "nas", "search", *COMMON, "--budget", str(args.budget), "--runs-dir", str(runs)]

    optuna_s, _ = _timed([*nas, "--name", "optuna", "--workers", "2", "--pruner", "none"], runs, env)
    ray_argv = [*nas, "--name", "ray", "--backend", "ray", "--max-concurrent", "2", "--cpus-per-trial", "1",
                "--no-asha"]
    ray_s, launched = _timed(_loopback_only(ray_argv), runs, env)

    records = _records(runs / "ray")
    assert len(records) == args.budget, f"Ray run finished {len(records)} of {args.budget} trials"
    first_start = min(r["started_at"] for r in records)
    by_actor: dict[int, list[dict]] = {}
    for r in records:
        by_actor.setdefault(r["pid"], []).append(r)
    handoffs = []
    for trials in by_actor.values():
        trials.sort(key=lambda r: r["started_at"])
        handoffs += [b["started_at"] - a["ended_at"] for a, b in zip(trials, trials[1:], strict=False)]
    in_trial = [(r["ended_at"] - r["started_at"]) - r["seconds"] for r in records]
    busy = sum(r["seconds"] for r in records)
    amortised = (2 * ray_s - busy) / len(records)
    optuna_busy = sum(r["seconds"] for r in _records(runs / "optuna"))

    print(f"tiny space, {args.budget} trials, 2 at a time, 1 thread each (runs in {runs})")
    print(f"optuna wall {optuna_s:6.1f} s   (trial work {optuna_busy:.1f} s)")
    print(f"ray    wall {ray_s:6.1f} s   (trial work {busy:.1f} s)")
    print(f"ray/optuna wall-time ratio       {ray_s / optuna_s:.2f}")
    print(f"ray start-up to first trial      {first_start - launched:.1f} s")
    if handoffs:  # none when every trial got a new actor (no actor reuse)
        print(f"ray hand-off per trial (median)  {statistics.median(handoffs):.2f} s  "
              f"(mean {statistics.mean(handoffs):.2f} s over {len(handoffs)} hand-offs)")
    print(f"ray in-trial overhead (median)   {statistics.median(in_trial):.2f} s")
    if handoffs:
        print(f"ray orchestration overhead/trial {statistics.median(handoffs) + statistics.median(in_trial):.2f} s "
              f"(hand-off + in-trial; target < 1 s)")
    print(f"ray amortised overhead/trial     {amortised:.2f} s  ((2 x wall - trial work) / trials, start-up included; "
          f"optuna: {(2 * optuna_s - optuna_busy) / args.budget:.2f} s)")


if __name__ == "__main__":
    main()
