"""A cached start without lowering: what the backend reads of a schedule, stored beside the module.

The generated module's cache key hashes its source, so a new process had to lower the model
(autodiff, scheduling) and print the module only to find it — ~0.25 s of a 0.32 s cached start
for the transformer. A second key, known before anything is lowered, names a small plan file:

    key  = sha256(the model's structural hash, input order, name; the dtype; the optimizer's
                  class, rules and hyperparameter names; the sources of graphnn and codegen
                  and the generators' module-level settings as they are now; the library versions)
    file = <cache>/graphnn_gen_plan_<key16>.json

The plan holds the module's file name and content hash, and what `CpuBackend` reads from a
`ModelSchedule` at run time: each program's arguments (name, shape, role, and for an input or a
parameter its place in the model's graph), the flat layout, the gradient buffers' names, the
optimizer's state and hyperparameter names. `load_plan` rebuilds a run-time-only schedule from
it — the same arguments, bound to this process's nodes — and the module's source from its file.
Every node a plan names is a node of the model's graph (autodiff makes no array constants); a
schedule that needed another is not stored, and that model is lowered at every start — as is a
model whose module the user's own code shapes (an op class, a lowering, an emitter or a rewrite
from outside graphnn and codegen: its source is in no key; `user_code`).

Nothing in it runs: JSON, read from the checked cache folder (codegen/cache.py) only if the file
is the user's own; a plan that is unreadable, foreign, or whose module is gone or changed is
ignored (the model is lowered as before) and rewritten.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from graphnn import graph as graph_module
from graphnn.files import write_bytes

from .cache import PREFIX, library_versions, notice, read_own_file, usable_cache_dir
from .plan import ModelSchedule
from .schedule import Buffer, Program, Update

FORMAT = 1
PLAN_PREFIX = PREFIX + "plan_"
_SOURCES_HASH: list = []   # computed once per process


@dataclass(eq=False)
class GradientRef:
    """Stands for a gradient node of a run-time-only schedule: only its buffer's name is known."""
    name: str


def _sources_hash() -> str:
    """sha256 over every .py file of graphnn and codegen: the code that lowers and prints."""
    if not _SOURCES_HASH:
        h = hashlib.sha256()
        for root in (Path(graph_module.__file__).parent, Path(__file__).parent):
            for path in sorted(root.rglob("*.py")):
                h.update(str(path.relative_to(root.parent)).encode())
                h.update(path.read_bytes())
        _SOURCES_HASH.append(h.hexdigest())
    return _SOURCES_HASH[0]


#: codegen modules whose settings do not shape the generated source (run time, caching, CUDA)
NOT_GENERATORS = ("backend", "background", "cache", "compile_child", "finite", "plan_cache", "worker", "cuda",
                  "intrinsics")   # (printed as text: its file is in the sources hash)


def _settings() -> dict:
    """The generators' module-level settings as they are now (``emit_conv.UNROLL``,
    ``fuse_conv.MAX_TAPS``, ``emit_cpu.FASTMATH``…): one changed at run time — a test's
    monkeypatch — changes the key as an edit of the file would."""
    out = {}
    # every generator module, imported now if lowering has not yet: the key before lowering and
    # the key after it must be the same
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg or info.name in NOT_GENERATORS:
            continue
        name = f"{__package__}.{info.name}"
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.isupper() and isinstance(value, (bool, int, float, str, tuple, frozenset, set)):
                text = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else repr(value)
                if " at 0x" not in str(text):   # an object's address differs in every process
                    out[f"{name}.{attr}"] = text
    return out


def plan_key(model, optimizer, dtype: str) -> str:
    """The plan's key, from what determines the generated module — before anything is lowered."""
    graph = model.graph
    parts = {"graph": graph.structural_hash(), "model": model.name, "dtype": dtype,
             "inputs": [graph.index.get(n) for n in model.inputs],
             "optimizer": [type(optimizer).__module__, type(optimizer).__qualname__,
                           repr(optimizer.code_key()), list(optimizer.state), repr(optimizer.rules())],
             "sources": _sources_hash(), "settings": _settings(), "versions": library_versions(),
             "format": FORMAT}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] in (graph_module.__package__, __package__)


def user_code(model) -> str | None:
    """The user's own code that would shape this model's module, or None: an op class, or a
    lowering, row-wise rule, emitter or rewrite registered from outside graphnn and codegen.
    Its source is in no key, so such a model has no plan: it is lowered at every start and
    its module found by its source, as before (never a module printed by older code)."""
    from .cell_graph import ROW_WISE
    from .emit_cpu import EMITTERS, REWRITES
    from .lower import LOWERINGS

    for node in model.graph.nodes:
        if not _ours(type(node.op)):
            return f"the op class {type(node.op).__qualname__}"
    for table in (LOWERINGS, ROW_WISE):
        for cls in table.classes():
            if not _ours(cls) or (callable(table.get(cls)) and not _ours(table.get(cls))):
                return f"{table.what} for {cls.__qualname__}"
    for step_type, fn in EMITTERS.items():
        if not (_ours(step_type) and _ours(fn)):
            return f"the emitter of {step_type.__qualname__}"
    for fn in REWRITES:
        if not _ours(fn):
            return f"the rewrite {getattr(fn, '__qualname__', fn)}"
    return None


def plan_path(folder: Path, key: str) -> Path:
    return folder / f"{PLAN_PREFIX}{key[:16]}.json"


# -- writing ------------------------------------------------------------------------------------

def save_plan(model, optimizer, sched: ModelSchedule, module_path) -> bool:
    """Write ``sched``'s run-time plan for ``module_path`` (atomically); False if it cannot be
    described by the model's own nodes or the folder refuses (nothing is written then)."""
    folder = usable_cache_dir()
    if folder is None or module_path is None or Path(module_path).parent != folder or user_code(model):
        return False   # (a plan names its module by file name, in its own folder)
    index = model.graph.index

    def ref(node):
        if node in index:
            return index[node]
        raise LookupError(node)

    def arg(a: Buffer):
        shape = list(a.shape)
        if a.role in ("input", "param"):
            return [a.name, shape, a.role, ref(a.node)]
        return [a.name, shape, a.role, None]

    try:
        plan = {
            "format": FORMAT, "module": Path(module_path).name,
            "source_sha256": hashlib.sha256(Path(module_path).read_bytes()).hexdigest(),
            "model_name": sched.model_name, "graph_hash": sched.graph_hash, "dtype": sched.dtype,
            "inputs": [ref(n) for n in sched.inputs], "trainable": [ref(p) for p in sched.trainable],
            "fixed": [ref(p) for p in sched.fixed], "consts": [ref(c) for c in sched.consts],
            "names": [[ref(n), sched.names[n]] for n in (*sched.inputs, *sched.trainable, *sched.fixed,
                                                            *sched.consts, model.output)],
            "flat_layout": [[ref(p), off, size, list(shape)] for p, off, size, shape in sched.flat_layout],
            "gradients": [[ref(p), sched.names[g]] for p, g in sched.gradients.items()],
            "programs": {p.name: [arg(a) for a in p.args] for p in (*sched.programs, sched.evaluate)},
            "update": {"state": list(sched.update.state), "hyper": list(sched.update.hyper)},
        }
    except (LookupError, OSError):
        return False
    try:
        write_bytes(plan_path(folder, plan_key(model, optimizer, sched.dtype)), json.dumps(plan).encode(),
                    mode=0o600)
    except OSError:
        return False
    return True


# -- reading ------------------------------------------------------------------------------------

def load_plan(model, optimizer, dtype: str):
    """``(run-time-only ModelSchedule, module source)`` from a stored plan, else None (lower)."""
    folder = usable_cache_dir()
    if folder is None or user_code(model):
        return None
    json_path = plan_path(folder, plan_key(model, optimizer, dtype))
    try:
        raw = read_own_file(json_path, 1 << 24)
        if raw is None:
            return None
        plan = json.loads(raw)
        if plan.get("format") != FORMAT:
            return None
        module = folder / plan["module"]
        source = read_own_file(module, 1 << 26)
        if source is None or hashlib.sha256(source).hexdigest() != plan["source_sha256"]:
            return None   # the module was cleared or rebuilt: lower, and write a new plan
        return _schedule(model, plan), source.decode("utf-8")
    except (ValueError, KeyError, IndexError, TypeError, OSError, UnicodeDecodeError) as e:
        notice(f"{json_path.name} cannot be used ({e}): lowering the model again")
        return None


def _schedule(model, plan) -> ModelSchedule:
    nodes = model.graph.nodes

    def node(i):
        if not (isinstance(i, int) and 0 <= i < len(nodes)):
            raise IndexError(f"node {i!r} is not in the model's graph of {len(nodes)} nodes")
        return nodes[i]

    names = {node(i): name for i, name in plan["names"]}
    gradients = {}
    for i, name in plan["gradients"]:
        gradients[node(i)] = g = GradientRef(name)
        names[g] = name

    def program(name):
        args = [Buffer(n, tuple(shape), role, node(ref) if ref is not None else None)
                for n, shape, role, ref in plan["programs"][name]]
        return Program(name, args, [])

    update = Update([], [], tuple(plan["update"]["state"]), tuple(plan["update"]["hyper"]))
    return ModelSchedule(plan["model_name"], plan["graph_hash"], plan["dtype"],
                         [node(i) for i in plan["inputs"]], [node(i) for i in plan["trainable"]],
                         [node(i) for i in plan["fixed"]], [node(i) for i in plan["consts"]], names,
                         [(node(i), off, size, tuple(shape)) for i, off, size, shape in plan["flat_layout"]],
                         gradients, program("forward"), program("loss"), program("grad_step"), update,
                         program("evaluate"), runtime_only=True)
