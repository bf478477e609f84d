"""Test-wide settings: headless plotting, and BLAS kept to the machine's cores."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
