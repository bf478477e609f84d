"""Registers benchmark row "W6 transformer" (benchmarks/w6_transformer.py) in benchmarks/run.py's
workload table: one training step of the built-in transformer beside a hand-written NumPy one."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baselines import runner_module  # noqa: E402
from benchmarks.w6_transformer import check_baseline, run as run_w6  # noqa: E402


def w6_row(dtype, quick):
    r = runner_module()
    rows = {row["impl"]: row for row in run_w6(repeats=2 if quick else 5, dtype=dtype)}
    cpu = rows["graphnn cpu"]
    notes = [f"W6 transformer {dtype}: seconds per training step (batch 32 windows of 32 characters, SGD), not per "
             f"epoch; first compiled pass of 10 steps {cpu['first_pass_s']:.2f} s (compile or cache load included); "
             f"CPU-time speed-up {cpu['cpu_speedup_vs_hand_numpy']:.2f}x"]
    if dtype == "float64":
        notes.append(f"W6 transformer: the hand NumPy step equals graphnn's reference (float64, 3 steps, largest "
                     f"parameter difference {check_baseline():.1e})")
    return r.Row("W6 transformer", dtype, rows["hand NumPy"]["s_per_step"], rows["graphnn numpy"]["s_per_step"],
                 cpu["s_per_step"], notes=notes)


runner_module().register_workload("W6 transformer", w6_row)
