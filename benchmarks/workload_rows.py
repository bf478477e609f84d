"""Registers benchmark rows W3 (Elman RNN, benchmarks/w3_rnn.py), W4 (CNN, w4_cnn.py) and W5
(LSTM, w5_lstm.py) in benchmarks/run.py's workload table: each beside its hand-written
NumPy baseline, run interleaved in the same process (best of the epochs)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baselines import runner_module  # noqa: E402
from benchmarks.w3_rnn import STEPS, run as run_w3  # noqa: E402
from benchmarks.w4_cnn import run as run_w4  # noqa: E402
from benchmarks.w5_lstm import run as run_w5  # noqa: E402


def _row(label, rows, dtype, steps_per_epoch):
    r = runner_module()
    by = {row["impl"]: row for row in rows}
    cpu, hand = by["graphnn cpu"], by["hand NumPy"]
    numpy = by.get("graphnn numpy", {}).get("s_per_epoch")
    notes = [f"{label.split()[0]} {dtype}: first compiled epoch {cpu['first_epoch_s']:.2f} s (compile or cache "
             f"load included)"]
    if steps_per_epoch:
        notes[0] += (f"; per training step (T = {STEPS}, batch 32): hand NumPy "
                     f"{1e3 * hand['s_per_epoch'] / steps_per_epoch:.2f} ms, graphnn cpu "
                     f"{1e3 * cpu['s_per_epoch'] / steps_per_epoch:.2f} ms")
    if "cpu_speedup_vs_hand_numpy" in cpu:
        notes[0] += f"; CPU-time speed-up {cpu['cpu_speedup_vs_hand_numpy']:.2f}x"
    return r.Row(label, dtype, hand["s_per_epoch"], numpy, cpu["s_per_epoch"], notes=notes)


def w3_row(dtype, quick):
    return _row("W3 Elman RNN T 50 H 64, b32", run_w3(epochs=2 if quick else 7, dtype=dtype), dtype, 16)


def w4_row(dtype, quick):
    return _row("W4 conv 3×3×8 + pool + dense, b32", run_w4(epochs=2 if quick else 10, dtype=dtype), dtype, 0)


def w5_row(dtype, quick):
    return _row("W5 LSTM T 50 H 64, b32", run_w5(epochs=2 if quick else 7, dtype=dtype), dtype, 16)


for _name, _fn in (("W3", w3_row), ("W4", w4_row), ("W5", w5_row)):
    runner_module().register_workload(_name, _fn)
