"""Registers benchmark row W4 (benchmarks/w4_cnn.py) in benchmarks/run.py's workload table."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.w4_cnn import run as run_w4  # noqa: E402


def _runner():
    """run.py's module: ``__main__`` when run as a script (its registry lives there)."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "register_workload"):
        return main
    return importlib.import_module("run")


def w4_row(dtype, quick):
    r = _runner()
    rows = {row["impl"]: row for row in run_w4(epochs=2 if quick else 5, dtype=dtype)}
    cpu = rows["graphnn cpu"]
    return r.Row("W4", dtype, rows["hand NumPy"]["s_per_epoch"], rows["graphnn numpy"]["s_per_epoch"],
                 cpu["s_per_epoch"],
                 notes=[f"W4 {dtype}: first compiled epoch {cpu['first_epoch_s']:.2f} s (compile or cache load "
                        f"included); CPU-time speed-up {cpu['cpu_speedup_vs_hand_numpy']:.1f}x"])


_runner().register_workload("W4", w4_row)
