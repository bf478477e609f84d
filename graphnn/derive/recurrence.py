"""Recurrences in the matrix view: the cell's equations, then backprop through time.

A looped scan is one node holding a cell (graphnn.looped). The view writes

- the cell's forward equations for one step t (Elman: s_t = tanh(s_{t−1} W + x_t U + b);
  the LSTM as Goodfellow's cell: g_t, i_t, f_t, o_t, c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t,
  h_t = o_t ⊙ tanh(c_t)), from the cell graph by the same formulas as any net;
- one step of BPTT, read from the autodiff record of the cell's own gradient (the body of
  the reverse loop, `Cell.grad_cell`): given ∂E/∂h_t and ∂E/∂c_t from the step after,
  the gates' δ's, ∂E/∂h_{t−1}, ∂E/∂c_{t−1};
- each weight's gradient as the BPTT sum over the steps, ∂E/∂W = Σ_t h_{t−1}ᵀ δ_t, with its
  value from the reverse loop (checked against the autodiff like every other number).
"""
from __future__ import annotations

from ..graph import Graph, written_order
from ..looped import Loop
from ..notation import latex_name
from .core import Form, Step
from .formulas import Formulas, bracket
from .matrix_rules import Piece, TERM_RULES
from ..names import Names


def _at(name: str, t: str) -> str:
    """h_t → h_0: the carry at a given step."""
    return name[:-2] + "_" + t if name.endswith("_t") else name + "_" + t


def _prev(name: str) -> str:
    """h_t → h_t-1 (printed h_{t−1}): the carry a step reads."""
    return name[:-2] + "_t-1" if name.endswith("_t") else name + "_prev"


class CellNames:
    """Course names inside one cell: h_{t−1}, c_{t−1} for the carries it reads, x_t."""

    def __init__(self, loop):
        cell = loop.attrs["cell"]
        self.cell = cell
        extra = {}
        for ph, out in zip(cell.carry_in, cell.carry_out):
            extra[ph] = _prev(out.name) if out.name else "h_t-1"
        for x in cell.x_in:
            extra[x] = (x.name or "x").split("(")[0] + "_t"
        self.grad_cell = cell.grad_cell
        self.names = Names(Graph([self.grad_cell.grads.record.loss]), extra)


def forward_items(ctx, loop) -> list:
    """The cell's equations for one step, under a sentence that says how many steps."""
    cn = CellNames(loop)
    T = loop.attrs["length"]
    formulas = Formulas(cn.names)
    eqs = formulas.equations(written_order(cn.cell.graph.nodes))   # the gates as written
    n_carry = loop.attrs["n_carry"]
    starts = ", ".join(f"${latex_name(_at(out.name or 'h_t', '0'))} = "
                       f"{ctx.formulas.rhs(init) if init.kind == 'constant' else ctx.ref(init)}$"
                       for out, init in zip(cn.cell.carry_out, loop.inputs[:n_carry]))
    items = [f"The recurrence ${ctx.ref(loop)}$: for $t = 1, \\ldots, {T}$, starting from {starts} "
             "(the initial state), each step computes:"]
    items += [Step(lhs, [Form(tex=rhs)], kind="forward") for lhs, rhs, _ in eqs]
    return items


def loop_steps(ctx, loop) -> list:
    """One step of BPTT from the cell's gradient record (a hook of the matrix walk)."""
    from .matrix import MatrixContext, walk

    cn = CellNames(loop)
    cell, gcell = cn.cell, cn.grad_cell
    E = ctx.loss_tex
    record = gcell.grads.record
    overrides, carried = {}, []
    for g, out in zip(gcell.gc + gcell.gy, cell.carry_out + cell.y_out):
        tex = r"\frac{\partial %s}{\partial %s}" % (E, cn.names.tex(out))
        if len(record.terms_into(out)) > 1:     # c_t is used inside the step too: tell the parts apart
            tex += r"\Big|_{t+1}"
            carried.append(tex)
        overrides[g] = tex
    sub = MatrixContext(ctx.req, record=gcell.grads.record, names=cn.names, values=None, loss_tex=E,
                        overrides=overrides)
    sub.notes = ctx.notes
    steps = walk(sub, set(cell.carry_in), collect=set(cell.free), shapes=False)
    ctx.loops[loop] = {leaf: sub.adj[leaf].tex for leaf in cell.free if leaf in sub.adj}
    T, k = loop.attrs["length"], loop.attrs.get("truncate")
    carries = ", ".join("$" + overrides[g] + "$" for g in gcell.gc)
    prev = ", ".join(f"${sub.adjoint_name(ph)}$" for ph in cell.carry_in)
    items = [f"Backpropagation through time: the reverse loop runs $t = {T}, \\ldots, 1$. At $t = {T}$, {carries} "
             "are the adjoints of the final state above (zero for a part the loss does not read); each step "
             f"computes the following, and its {prev} are the previous step's {carries}"
             + (f" (truncated: what enters at step $\\tau$ travels back at most {k} steps)" if k else "") + "."
             + "".join(f" ${c}$ is the part step $t + 1$ sends back; the step adds its own use." for c in carried)]
    for s in steps:
        s.kind = "bptt"
    return items + steps


def _loop_rule(ctx, term, up):
    """A weight the cell reads: the sum over the steps of its per-step share."""
    loop = term.consumer
    a = loop.attrs
    cell = a["cell"]
    pos = term.position - a["n_carry"] - a["n_xs"]
    if pos < 0:
        return Piece(r"\frac{\partial %s}{\partial %s}" % (ctx.loss_tex, ctx.ref(term.input)))
    leaf = cell.free[pos]
    per_step = ctx.loops.get(loop, {}).get(leaf, r"\frac{\partial %s_t}{\partial %s}" % (ctx.loss_tex, ctx.ref(leaf)))
    T = a["length"]
    num = (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None
    return Piece(r"\sum_{t=1}^{%d} %s" % (T, bracket(per_step)), num)


TERM_RULES[Loop] = _loop_rule


def loop_hooks() -> dict:
    return {Loop: loop_steps}
