"""TensorBoard event files: per-trial curves plus one hparams table across the run."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# tensorboard prints a TensorFlow-not-found notice on import; it is harmless here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@functools.cache
def _summary_writer() -> Any:
    """torch's SummaryWriter class, or None where tensorboard is not installed (a bare GPU box:
    the search runs on, results.csv and metrics.json hold the same numbers). Imported on first
    use: tensorboard takes about a second to import."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: trials are recorded without TensorBoard event files")
        return None
    return SummaryWriter


def write_trial_events(folder: Path, history: list[dict[str, float]], hparams: dict[str, Any],
                       metrics: dict[str, float]) -> None:
    """Curves of one trial (val_acc, train_loss per epoch) and its row of the hparams table."""
    SummaryWriter = _summary_writer()  # noqa: N806 (a class)
    if SummaryWriter is None:
        return
    with SummaryWriter(log_dir=str(folder)) as writer:
        for point in history:
            epoch = int(point["epoch"])
            writer.add_scalar("proxy/val_acc", point["val_acc"], epoch)
            writer.add_scalar("proxy/train_loss", point["train_loss"], epoch)
        clean = {k: v for k, v in metrics.items() if v is not None}
        # run_name "." keeps the hparams record in the trial's own folder, so TensorBoard
        # shows one table with a row per trial when pointed at the run directory.
        writer.add_hparams(_hparam_values(hparams), {f"hparam/{k}": v for k, v in clean.items()}, run_name=".")


def _hparam_values(hparams: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in hparams.items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out
