"""The 'cuda' backend as a user meets it: the CLI in the simulator, and clear errors (never a
traceback) where there is no GPU, no driver or no numba-cuda. Each case is a fresh process,
because numba.cuda's target (simulator or GPU) is fixed when it is first imported."""
import os
import re
import subprocess
import sys

ENV = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
GRAPHNN = [sys.executable, "-m", "graphnn"]   # the CLI of this interpreter (CI runs a venv)


def _run(args, sim=False, timeout=300):
    env = dict(ENV, **({"NUMBA_ENABLE_CUDASIM": "1"} if sim else {}))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def _final_loss(text):
    return float(re.search(r"final loss: ([0-9.eE+-]+)", text).group(1))


def test_cli_train_cuda_in_simulator_matches_numpy():
    sim = _run(GRAPHNN + ["train", "xor", "--backend", "cuda", "--steps", "2"], sim=True)
    assert sim.returncode == 0, sim.stderr
    assert "on cuda" in sim.stdout
    ref = _run(GRAPHNN + ["train", "xor", "--backend", "numpy", "--steps", "2"])
    assert ref.returncode == 0, ref.stderr
    assert abs(_final_loss(sim.stdout) - _final_loss(ref.stdout)) < 1e-9


def test_cli_cuda_without_gpu_is_a_clear_error():
    proc = _run(GRAPHNN + ["train", "xor", "--backend", "cuda", "--steps", "2"])
    if proc.returncode == 0:   # a machine with a GPU: nothing to check here
        assert "on cuda" in proc.stdout
        return
    assert proc.returncode == 2
    assert "graphnn train: error: backend 'cuda'" in proc.stderr
    assert "NUMBA_ENABLE_CUDASIM" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_python_api_without_numba_cuda_says_what_to_install():
    code = (
        "import codegen.cuda.device as d\n"
        "d.numba_cuda_installed = lambda: False\n"
        "from graphnn.models import get_model\n"
        "from graphnn.training import Trainer\n"
        "try:\n"
        "    Trainer(get_model('xor'), backend='cuda')\n"
        "except d.CudaUnavailableError as e:\n"
        "    print('ERROR', e)\n")
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert "ERROR backend 'cuda' needs NVIDIA's numba-cuda" in proc.stdout
    assert "graphnn[cuda]" in proc.stdout


def test_importing_codegen_does_not_load_numba_cuda():
    code = ("import sys, codegen\nfrom graphnn.training import BACKENDS\n"
            "print('cuda' in BACKENDS, 'numba.cuda' in sys.modules)")
    proc = _run([sys.executable, "-c", code])
    assert proc.stdout.split() == ["True", "False"], proc.stderr


def test_cli_codegen_prints_the_cuda_module_without_a_gpu():
    proc = _run(GRAPHNN + ["codegen", "digits-mlp", "--cuda", "--dtype", "float32", "--optimizer", "adam"])
    assert proc.returncode == 0, proc.stderr
    src = proc.stdout
    compile(src, "generated", "exec")                  # valid Python
    for part in ("@cuda.jit", "def grad_step(a, B):", "def update(a, t, hyper):", "F = np.float32",
                 "_matmul_tn", "softmax cross-entropy"):
        assert part in src
