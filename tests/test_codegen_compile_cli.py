"""``graphnn codegen MODEL --compile``: the training module compiled into the cache ahead of a run
(compiler processes started before the lowering, one per core), so that a later run loads it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LATER_RUN = textwrap.dedent("""
    import graphnn as gn
    from graphnn.models import get_model
    trainer = gn.Trainer(get_model('xor'), backend='cpu', background_compile=False)
    trainer.fit(epochs=2)
    module = trainer.backend.module
    stats = module.train_epoch.stats
    print('misses', sum(stats.cache_misses.values()), 'hits', sum(stats.cache_hits.values()))
""")


def test_compile_fills_the_cache_that_a_later_training_run_loads(tmp_path):
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    cli = subprocess.run([sys.executable, "-m", "graphnn", "codegen", "xor", "--compile"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    ready = next(line for line in cli.stdout.splitlines() if " ready in " in line)
    assert ready.startswith("# train_epoch, evaluate ready in ") and str(tmp_path / "cache") in ready
    assert "def train_epoch(" in cli.stdout                     # the module itself is printed after
    assert list((tmp_path / "cache" / "__pycache__").glob("graphnn_gen_*.nbi"))
    later = subprocess.run([sys.executable, "-c", LATER_RUN], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert later.returncode == 0, later.stderr[-2000:]
    assert later.stdout.split()[-4:] == ["misses", "0", "hits", "1"], later.stdout
