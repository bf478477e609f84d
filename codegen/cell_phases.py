"""The BPTT schedule of a recurrence: which parts of a cell run once per time step, and
which run once for all T steps with the time axis folded into the batch.

A cell's forward graph and its gradient graph (`Cell.grad_cell`, from the one autodiff)
split into phases:

- ``pre``    nodes that read the step's input x_t and the weights but not the carry
             (``x_t @ U``): computed for every t at once, one (T·B)-row product before
             the loop;
- ``fwd``    the recurrent rest of the forward step; it keeps what the backward pass
             reads (the carries, the per-step outputs, the gate values it stashes) for
             every t, so nothing is recomputed;
- ``bwd``    the reverse step: the chain of d(carry) and what cannot wait;
- ``post``   the rest of the gradient — the weight gradients Σ_t s_{t−1}ᵀ δ_t, Σ_t x_tᵀ δ_t,
             Σ_t Σ_b δ_t and d x_t — computed once over the stacked per-step values after
             the loop: one (T·B)-row product each;
- ``static`` nodes of the weights alone (Wᵀ, made contiguous), computed once per call.

Folding time into the batch is exact only for ops that treat the rows of the batch
independently (`ROW_WISE`); a sum over the batch then sums over time as well, which is
what BPTT adds up (a VJP is linear in its cotangent, so Σ_t of a reduction is the
reduction of the stacked rows). Anything else stays per step, as the reference does it.

Per-step values live in time-major stacks ("slots", (depth, B, …)): ``hist<k>`` (carry k,
T + 1 deep: t = 0 is the initial carry), ``x<k>``, ``pre<k>``, ``fst<k>`` (stashed forward
values), ``y<j>``, ``gy<j>``, ``gc<k>`` (d carry, T + 1 deep), ``bst<k>`` (per-step
gradient values the post phase reads), ``dx<k>``. A phase's leaf reads one of them at step
t + offset (``('at', slot, offset)``) or all T steps as rows (``('rows', slot, offset)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphnn.errors import GradientError
from graphnn.graph import Graph
from graphnn.ops import Sum, input as input_

from .cell_graph import (ROW_WISE, VIEWS, batched, contraction, rebuild, transposed_rows,
                         value_inputs)


@dataclass
class Phase:
    """One compiled function of the schedule: the (rebuilt) graph's outputs and where each
    leaf comes from and each output goes. Sources/targets: ('at', slot, offset),
    ('rows', slot, offset), ('free', k), ('static', tag, k), ('acc', k) (a per-step free-leaf
    gradient, summed over t), ('out', k) (a free-leaf gradient written once); truncated
    BPTT: ('acc_at', slot, 0) (summed into the slot over the sweeps), ('dc', k) / ('gcur', k)
    (d carry out / in), ('gyat', j) (d y_t, zero but at the sweep's own step)."""

    outputs: list
    sources: dict                  # leaf node of the rebuilt graph -> source
    targets: list                  # one per output
    rows: bool = False             # runs over T·B rows (pre, post)
    shape_leaves: set = field(default_factory=set)   # placeholders read for their shape only


@dataclass
class CellPlan:
    """The phases of one cell (see the module docstring) and the slots they use."""

    slots: dict                    # slot name -> per-step shape (None, …)
    depth: dict                    # slot name -> T or T + 1 (symbolic: 'T', 'T1')
    static_fwd: Phase | None
    pre: Phase | None
    fwd: Phase
    static_bwd: Phase | None = None
    bwd: Phase | None = None
    post: Phase | None = None
    y_slots: tuple = ()            # per-step output j -> (slot, offset)
    grad_positions: tuple = ()     # which grad-cell outputs this plan computes
    dx_slots: dict = field(default_factory=dict)   # x position -> slot holding d x_t (T deep)
    free_targets: dict = field(default_factory=dict)   # free position -> ('acc'|'out', k)

    def phases(self):
        return [p for p in (self.static_fwd, self.pre, self.fwd, self.static_bwd, self.bwd, self.post) if p]


# -- the analysis ------------------------------------------------------------------------

class _Cell:
    """Dependencies and the forward side of the schedule (the same for every gradient)."""

    def __init__(self, cell):
        self.cell = cell
        try:
            self.gcell = cell.grad_cell
        except GradientError:   # a cell without gradient still runs forward
            self.gcell = None
        outs, _ = rebuild(list(cell.carry_out) + list(cell.y_out)
                          + (list(self.gcell.outputs) if self.gcell else []), {}, keep_identity=False,
                          shape_refs=False)
        nf = len(cell.carry_out) + len(cell.y_out)
        self.fwd_outs, grad_outs = outs[:nf], outs[nf:]
        self.carry_out, self.y_out = self.fwd_outs[:len(cell.carry_out)], self.fwd_outs[len(cell.carry_out):]
        self.grad_outputs = grad_outs
        self.nodes = Graph(self.fwd_outs + grad_outs).nodes
        self.forward = set(Graph(self.fwd_outs).nodes)
        role = {n: "C" for n in cell.carry_in}
        role.update({n: "X" for n in cell.x_in})
        if self.gcell:
            role.update({n: "K" for n in self.gcell.gc + self.gcell.gy})
        role.update({n: "Fb" for n in cell.free if batched(n)})
        self.deps = {}
        for n in self.nodes:
            if n in role:
                self.deps[n] = {role[n]}
            elif n.kind != "op":
                self.deps[n] = set()
            else:
                d = set()
                for pos, x in enumerate(n.inputs):
                    if pos in n.op.nondiff_inputs:
                        d |= {"N"} if batched(x) or self.deps[x] else set()   # a size read
                    else:
                        d |= self.deps[x]
                self.deps[n] = d
        self.grad_outs = set(grad_outs)
        self.pre = self._pre()
        readers = [n for n in self.nodes if n not in self.pre]
        self.frontier = [n for n in self.nodes if n in self.pre
                         and any(x is n for r in readers for _, x in value_inputs(r))]
        self.slot_of = self._forward_slots()

    def static(self, n) -> bool:
        return not self.deps[n] and not (n.kind == "input" and batched(n))

    def backward(self, n) -> bool:
        return "K" in self.deps[n] or n in self.grad_outs

    def _pre(self):
        pre, x_in = set(), set(self.cell.x_in)
        outs = set(self.fwd_outs)
        for n in self.nodes:
            if n.kind != "op" or n in outs or n not in self.forward or self.deps[n] != {"X"}:
                continue
            if not (batched(n) and ROW_WISE.get(n.op, lambda _: False)(n)):
                continue
            if all(x in pre or x in x_in or (not batched(x) and self.static(x)) for _, x in value_inputs(n)):
                pre.add(n)
        return pre

    def _forward_slots(self):
        """Forward node -> (slot, offset) for every value kept per step."""
        cell, slot = self.cell, {}
        for k, n in enumerate(cell.carry_in):
            slot[n] = (f"hist{k}", 0)
        for k, n in enumerate(cell.x_in):
            slot[n] = (f"x{k}", 0)
        for k, n in enumerate(self.carry_out):
            slot.setdefault(n, (f"hist{k}", 1))
        self.y_slots = []
        for j, n in enumerate(self.y_out):
            self.y_slots.append(slot.setdefault(n, (f"y{j}", 0)))
        for k, n in enumerate(self.frontier):
            slot[n] = (f"pre{k}", 0)
        self.stash = []
        seen = set()

        def need(x):
            if x in seen or x in slot or x.kind != "op" or not self.deps[x] & {"C", "X"}:
                return   # (values of the weights and the batch size alone are recomputed)
            seen.add(x)
            if isinstance(x.op, VIEWS) or not batched(x):   # views and unbatched values: recomputed
                for _, i in value_inputs(x):
                    need(i)
                return
            slot[x] = (f"fst{len(self.stash)}", 0)
            self.stash.append(x)

        for n in self.nodes:
            if self.backward(n):
                for _, x in value_inputs(n):
                    if not self.backward(x):
                        need(x)
        return slot


def _leaf_subs(nodes, source_of, placeholder_name):
    """Placeholders for the nodes of ``nodes`` that ``source_of`` backs: {node: leaf}, {leaf: source}."""
    subs, sources = {}, {}
    for n in nodes:
        src = source_of(n)
        if src is None:
            continue
        leaf = n if n.kind == "input" else input_(placeholder_name(n), n.shape)
        subs[n], sources[leaf] = leaf, src
    return subs, sources


def _phase(outputs, targets, source_of, rows=False, hoist=None):
    """Rebuild ``outputs`` with sourced leaves; with ``hoist`` (a tag), weights-only nodes
    become a static phase (returned second) whose values are ('static', tag, k)."""
    graph_nodes = Graph(list(outputs)).nodes
    subs, sources = _leaf_subs(graph_nodes, source_of, lambda n: f"{n.name or n.op.name}(t)")
    new_outs, shape_leaves = rebuild(outputs, {n: leaf for n, leaf in subs.items() if leaf is not n})
    static = None
    if hoist:
        new_outs, sources, static = _hoist_static(new_outs, sources, shape_leaves, hoist)
    for n in Graph(new_outs).nodes:   # leaves not substituted: free leaves keep their role
        if n.kind != "op" and n not in sources and n not in shape_leaves and n.kind != "constant":
            src = source_of(n)
            if src is None:
                raise AssertionError(f"codegen: recurrence phase leaf {n!r} has no source")
            sources[n] = src
    return Phase(new_outs, sources, list(targets), rows, shape_leaves), static


def _hoist_static(outputs, sources, shape_leaves, tag):
    """Nodes of the weights alone (no per-step leaf) read by per-step nodes: computed once."""
    nodes = Graph(list(outputs)).nodes
    varying = set()
    for n in nodes:
        if n in sources and sources[n][0] != "free" or n in shape_leaves or \
                (n.kind == "input" and batched(n)) or any(x in varying for x in n.inputs):
            varying.add(n)
    hoisted = [n for n in nodes if n.kind == "op" and n not in varying and n.shape != ()
               and any(n in r.inputs for r in nodes if r in varying)]
    if not hoisted:
        return outputs, sources, None
    subs = {n: input_(f"{n.name or n.op.name}_once", n.shape) for n in hoisted}
    new_outs, more_shapes = rebuild(outputs, subs)
    shape_leaves |= more_shapes
    sources = dict(sources)
    sources.update({leaf: ("static", tag, k) for k, leaf in enumerate(subs.values())})
    static_sources = {}
    for n in Graph(hoisted).nodes:
        if n.kind != "op" and n.kind != "constant":
            static_sources[n] = sources[n]
    static = Phase(list(hoisted), static_sources, [("static", tag, k) for k in range(len(hoisted))])
    return new_outs, sources, static


_ANALYSES: dict = {}


def _analysis(cell) -> _Cell:
    a = _ANALYSES.get(id(cell))
    if a is None or a.cell is not cell:
        a = _ANALYSES[id(cell)] = _Cell(cell)
    return a


def plan_cell(cell, grad_positions=None, truncated=False) -> CellPlan:
    """The phases of ``cell``'s schedule; with ``grad_positions`` (indices into the grad
    cell's outputs: carries, then inputs, then free leaves) also its BPTT phases."""
    a = _analysis(cell)
    slots, depth = {}, {}

    def use(name, shape, deep=False):
        slots.setdefault(name, tuple(shape))
        depth.setdefault(name, "T1" if deep else "T")

    for k, n in enumerate(cell.carry_in):
        use(f"hist{k}", n.shape, deep=True)
    free_role = {n: ("free", k) for k, n in enumerate(cell.free)}
    for n, (slot, _) in a.slot_of.items():
        if slot[0] != "h":
            use(slot, n.shape)
    # pre: every t at once, over the inputs' T·B rows
    pre = None
    if a.frontier:
        pre, _ = _phase(a.frontier, [("rows", f"pre{k}", 0) for k in range(len(a.frontier))],
                        lambda n: ("rows",) + a.slot_of[n] if n in cell.x_in else free_role.get(n), rows=True)
    # fwd: the step; writes the new carries, the outputs and the stash at t
    outs = list(a.fwd_outs) + [n for n in a.stash if n not in a.fwd_outs]
    targets = [("at", f"hist{k}", 1) for k in range(len(cell.carry_out))] + \
        [("at",) + s for s in a.y_slots] + [("at",) + a.slot_of[n] for n in outs[len(a.fwd_outs):]]
    fwd_src = {n: ("at",) + a.slot_of[n] for n in list(cell.carry_in) + list(cell.x_in) + a.frontier}
    fwd, static_fwd = _phase(outs, targets, lambda n: fwd_src.get(n, free_role.get(n)), hoist="fwd")
    plan = CellPlan(slots, depth, static_fwd, pre, fwd, y_slots=tuple(a.y_slots))
    if grad_positions is not None and a.gcell is not None:
        _plan_backward(a, plan, tuple(grad_positions), truncated, use, free_role)
    return plan


def _plan_backward(a, plan, positions, truncated, use, free_role):
    """The bwd, static_bwd and post phases for the gradient outputs at ``positions``."""
    cell, g = a.cell, a.gcell
    nc, nx = len(cell.carry_in), len(cell.x_in)
    chain_outs = list(a.grad_outputs[:nc])
    wanted = {p: a.grad_outputs[p] for p in positions if p >= nc}
    back = [n for n in Graph(chain_outs + list(wanted.values())).nodes if a.backward(n)]
    post = _split_backward(a, back, chain_outs, wanted, truncated)
    bstash = [x for x in back if x not in post and x not in g.gc and x not in g.gy and batched(x)
              and any(x is i for n in back if n in post for _, i in value_inputs(n))]
    for k, n in enumerate(bstash):
        use(f"bst{k}", n.shape)
    for k, n in enumerate(g.gc if not truncated else ()):
        use(f"gc{k}", n.shape, deep=True)
    for j, n in enumerate(g.gy):
        use(f"gy{j}", n.shape)
    at = "acc_at" if truncated else "at"
    b_outs = list(chain_outs)
    b_targets = [("dc", k) if truncated else ("at", f"gc{k}", 0) for k in range(nc)]
    post_outs, post_targets = [], []
    for p, n in sorted(wanted.items()):
        if p < nc + nx:
            slot = f"dx{p - nc}"
            use(slot, cell.x_in[p - nc].shape)
            plan.dx_slots[p - nc] = slot
            target = ("rows", slot, 0) if n in post else (at, slot, 0)
        else:
            target = plan.free_targets[p - nc - nx] = ("out" if n in post else "acc", p - nc - nx)
        (post_outs if n in post else b_outs).append(n)
        (post_targets if n in post else b_targets).append(target)
    b_outs += bstash
    b_targets += [(at, f"bst{k}", 0) for k in range(len(bstash))]
    bst_slot = {n: (f"bst{k}", 0) for k, n in enumerate(bstash)}

    def source(n, how):
        if n in bst_slot and how == "rows":
            return ("rows",) + bst_slot[n]
        if n in g.gc:
            k = g.gc.index(n)
            return ("rows", f"gc{k}", 1) if how == "rows" else ("gcur", k) if truncated else ("at", f"gc{k}", 1)
        if n in g.gy:
            j = g.gy.index(n)
            return ("gyat", j) if truncated and how == "at" else (how, f"gy{j}", 0)
        if n in a.slot_of and not a.backward(n):
            return (how,) + a.slot_of[n]
        return free_role.get(n)

    plan.bwd, plan.static_bwd = _phase(b_outs, b_targets, lambda n: source(n, "at"), hoist="bwd")
    plan.grad_positions = positions
    if post_outs:
        plan.post, _ = _phase(post_outs, post_targets, lambda n: source(n, "rows"), rows=True)


def _split_backward(a, back, chain_outs, wanted, truncated):
    """The gradient nodes that can run once over the stacked steps (the rest runs per step):
    grown in graph order, then shrunk until nothing per-step reads one of them."""
    g = a.gcell
    nc, nx = len(a.cell.carry_in), len(a.cell.x_in)
    out_pos = {}
    for p, n in wanted.items():
        out_pos.setdefault(n, p)
    bwd = _ancestors(chain_outs, a.backward)
    gc, gy = set(g.gc), set(g.gy)
    rows_fwd = _RowsForward(a)
    while True:
        post = set()

        def kind(x):
            if x in post:
                return "rows" if batched(x) else ("trows" if transposed_rows(x) else "sum")
            if x in gy or (x in gc and not truncated):
                return "rows"
            if x in bwd or a.backward(x):
                return "rows" if x in bwd and batched(x) and x not in gc else None
            return rows_fwd(x)

        for n in back:
            if n not in bwd:
                (post if _post_ok(n, kind, out_pos.get(n), nc, nx) else bwd).add(n)
        moved = post & _ancestors(list(bwd), lambda x: x in post or x in bwd)
        if not moved:
            return post
        bwd |= moved


def _ancestors(roots, inside):
    """``roots`` and their ancestors through value inputs, staying where ``inside(node)``."""
    out, todo = set(), [r for r in roots if inside(r)]
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        todo += [x for _, x in value_inputs(n) if inside(x) and x not in out]
    return out


class _RowsForward:
    """How the post phase can read a forward value: 'rows' (its T·B rows: kept per step, or
    recomputed row-wise from such), 'trows' (a transpose of those), 'static', or None."""

    def __init__(self, a):
        self.a, self.memo = a, {}

    def __call__(self, x):
        if x not in self.memo:
            self.memo[x] = self._kind(x)
        return self.memo[x]

    def _kind(self, x):
        a = self.a
        if x in a.slot_of:
            return "rows"
        if not batched(x) and not transposed_rows(x):
            return "static" if a.static(x) else None
        if x.kind != "op":
            return None
        kinds = [self(i) for _, i in value_inputs(x)]
        if transposed_rows(x):
            return "trows" if kinds == ["rows"] else None
        if ROW_WISE.get(x.op, lambda _: False)(x) and all(k in ("rows", "static") for k in kinds):
            return "rows"
        return None


def _post_ok(n, kind, out_pos, nc, nx) -> bool:
    """Whether gradient node ``n`` can run once over the stacked T·B rows (module docstring)."""
    if out_pos is not None and batched(n) and not nc <= out_pos < nc + nx:
        return False   # a batched free leaf's gradient sums over t: per step
    kinds = [kind(x) for _, x in value_inputs(n)]
    if batched(n):
        return ROW_WISE.get(n.op, lambda _: False)(n) and all(k in ("rows", "static") for k in kinds)
    if transposed_rows(n):
        return kinds == ["rows"]
    if contraction(n):
        if isinstance(n.op, Sum):
            return kinds == ["rows"]
        return kinds == ["trows", "rows"]
    return all(k in ("static", "sum") for k in kinds) and "sum" in kinds
