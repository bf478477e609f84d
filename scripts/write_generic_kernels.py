"""Write codegen/generic_kernels.py again from its generators (codegen/shared_loops.py).

    python scripts/write_generic_kernels.py

tests/test_generic_kernels.py fails while the stored file differs from what they print.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.shared_loops import generic_kernels_source  # noqa: E402
from graphnn.files import atomic_write  # noqa: E402

target = ROOT / "codegen" / "generic_kernels.py"
atomic_write(target, lambda f: f.write(generic_kernels_source().encode()))
print(f"wrote {target}")
