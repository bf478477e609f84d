"""``graphnn codegen MODEL --compile``: the training module compiled into the cache ahead of a run
(compiler processes started before the lowering, one per core), so that a later run loads it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


IN_THIS_PROCESS = textwrap.dedent("""
    import graphnn as gn
    from codegen.background import compile_into_cache
    from graphnn.models import get_model
    model = get_model('xor')
    said = []
    done = compile_into_cache(model, gn.Trainer(model, backend='numpy').optimizer, 'float64', report=said.append)
    print(repr(said))
    print(done['functions'])
""")


def test_this_process_compiles_train_epoch_while_a_child_compiles_the_rest(tmp_path):
    """Nothing else runs during an ahead-of-time compile: the parent compiles the largest
    function itself (no child's start-up on the longest path), one child the others."""
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", IN_THIS_PROCESS], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    said, functions = run.stdout.splitlines()[-2:]
    assert functions == "['train_epoch', 'evaluate']"
    assert "compiling evaluate in 1 compiler process (pid " in said, said   # only evaluate was sent
    compiled = next(m for m in eval(said) if m.startswith("compiled "))   # both timed, either order
    assert "train_epoch in " in compiled and "evaluate in " in compiled, said


class _Dispatcher:
    def __init__(self, name, compiled):
        self.name, self.compiled = name, compiled

    def compile(self, sig):
        self.compiled.append(self.name)


class _Pool:
    """A compiler pool whose child is still at work (or done) when this process has compiled its share."""

    def __init__(self, child_done: bool, on_its_own: bool = False):
        self.child_done, self.on_its_own, self.stopped, self.helps = child_done, on_its_own, False, None

    def working(self):
        return not self.child_done

    def helping(self):   # at work, and not yet at its own functions
        return not self.child_done and not self.on_its_own

    def run(self, source, key, sent, cancelled, report=None, meanwhile=None, helps=()):
        self.helps = list(helps)
        meanwhile()
        if cancelled.is_set():   # what CompilerPool.run does: its children are stopped
            from codegen.worker import Cancelled
            self.stopped = True
            raise Cancelled
        return {fn: 0.5 for fn, _ in sent}


def _backend(compiled):
    from types import SimpleNamespace

    module = SimpleNamespace(train_epoch=_Dispatcher("train_epoch", compiled),
                             evaluate=_Dispatcher("evaluate", compiled))
    return SimpleNamespace(module=module, source="", cache_key={})


def test_a_child_still_at_work_is_overtaken_by_this_process():
    from codegen.background import _compile_beside

    compiled, pool = [], _Pool(child_done=False)   # a small model: the child has not even started
    timings = _compile_beside(pool, _backend(compiled), [("train_epoch", ())], [("evaluate", ())], None)
    assert compiled == ["train_epoch", "evaluate"] and pool.stopped
    assert set(timings) == {"train_epoch", "evaluate"}


def test_a_child_done_first_is_not_overtaken():
    from codegen.background import _compile_beside

    compiled, pool = [], _Pool(child_done=True)
    timings = _compile_beside(pool, _backend(compiled), [("train_epoch", ())], [("evaluate", ())], None)
    assert compiled == ["train_epoch"] and not pool.stopped
    assert timings["evaluate"] == 0.5 and "train_epoch" in timings
    assert pool.helps == [("train_epoch", ())]   # the child compiles train_epoch's helpers from the end


def test_a_child_at_its_own_functions_is_waited_for_not_overtaken():
    """It has begun evaluate (after helping with train_epoch's helpers): what it has left takes
    less than all of evaluate would here."""
    from codegen.background import _compile_beside

    compiled, pool = [], _Pool(child_done=False, on_its_own=True)
    timings = _compile_beside(pool, _backend(compiled), [("train_epoch", ())], [("evaluate", ())], None)
    assert compiled == ["train_epoch"] and not pool.stopped
    assert timings["evaluate"] == 0.5


def test_a_child_says_when_it_is_at_its_own_functions_read_without_moving_its_output():
    import tempfile

    from codegen.worker import _Child

    child = _Child.__new__(_Child)   # no process: only what its output says
    child.out = tempfile.TemporaryFile()
    child.out.write(b"helped 3 0.512 train_epoch\n")
    child.out.flush()   # (the child writes to the file itself, unbuffered by this process)
    assert not child.on_its_own()
    child.out.write(b"compiling evaluate\n")
    child.out.flush()
    at = child.out.tell()
    assert child.on_its_own() and child.out.tell() == at   # the child's next line goes after it


def test_a_numba_error_in_this_process_names_the_generated_function():
    """What this process compiles fails as a compiler process's compile does: one CodegenError
    naming the generated function, not Numba's raw error."""
    from numba.core.errors import TypingError

    from codegen.background import _compile_beside
    from codegen.lower import CodegenError

    class Failing(_Dispatcher):
        def compile(self, sig):
            raise TypingError("No implementation of function <built-in function getitem>")

    backend = _backend([])
    backend.module.train_epoch = Failing("train_epoch", [])
    with pytest.raises(CodegenError, match=r"generated function 'train_epoch'.*\n.*getitem"):
        _compile_beside(_Pool(child_done=True), backend, [("train_epoch", ())], [("evaluate", ())], None)
