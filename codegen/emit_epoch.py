"""emit_epoch: the printers of ``train_step`` and ``train_epoch`` (the functions a `ModelSchedule`
trains with, around the gradient step emit_cpu prints)."""
from __future__ import annotations

from .emit_arrays import array_op
from .emit_cpu import INDENT, Writer, jit_decorator, program_lines
from .emit_update import update_args
from .fuse_update import fold_sgd
from .outline import should_outline
from .workspace import WORK, Carving, batched_inputs


def train_step_args(sched, carving: Carving | None = None):
    step = (carving or Carving.of(sched)).args(sched.grad_step)
    return step + [a for a in update_args(sched.update) if a not in step]


def emit_train_step(sched, carving: Carving | None = None) -> str:
    gargs = ", ".join((carving or Carving.of(sched)).args(sched.grad_step))
    uargs = ", ".join(update_args(sched.update))
    return "\n".join([
        jit_decorator(),
        f"def train_step({', '.join(train_step_args(sched, carving))}):",
        f'{INDENT}"""grad_step then apply_update: the parameters change in place; returns the loss."""',
        f"{INDENT}loss = grad_step({gargs})",
        f"{INDENT}apply_update({uargs})",
        f"{INDENT}return loss"]) + "\n"


def train_epoch_args(sched, carving: Carving | None = None):
    """train_epoch's parameters: the data, the order, then train_step's arguments but the batched
    inputs (gathered into workspace buffers), each hyperparameter as an array of its values per
    batch (``<h>_per_step``: schedules)."""
    data = [f"{a.name}_data" for a in batched_inputs(sched)]
    gathered = {a.name for a in batched_inputs(sched)}
    step = [n for n in train_step_args(sched, carving)[:-len(sched.update.hyper) or None] if n not in gathered]
    work = [WORK] if gathered and WORK not in step else []   # the batch buffers, even with no temporary
    return data + ["order", "batch_size"] + step + work + [f"{h}_per_step" for h in sched.update.hyper]


def _step_input(prog):
    """The grad_step argument fed the training step (dropout's and noise's ``step``), if any."""
    from graphnn.ops.dropout import STEP

    return next((a.name for a in prog.args if a.role == "input" and a.node is STEP), None)


def _gather_batch(w, sched, whole, unique):
    """The batch's inputs.

    A batch whose rows are consecutive rows of the data, in order (full-batch training, an
    unshuffled epoch), is read where it lies — ``rows_at(x_data, first, nb)``, no copy; any
    other is gathered row by row into the batch buffers (the kernels never write an input)."""
    inputs = batched_inputs(sched)
    if inputs:
        first, in_order = unique("first_row"), unique("in_order")
        w(f"{first} = order[start]")
        w(f"{in_order} = True")
        w("for r in range(1, nb):")
        w(f"    if order[start + r] != {first} + r:")
        w(f"        {in_order} = False")
        w("        break")
        w(f"if {in_order}:  # rows {first} … {first} + nb − 1 of the data: read in place")
        for a in inputs:
            w(f"    {a.name} = rows_at({a.name}_data, {first}, nb)")
        w("else:")
        w.indent()
        w("for r in range(nb):")
        w.indent()
        w("row = order[start + r]")
        for a in inputs:
            if len(a.shape) == 2:
                w(f"for c in range({whole[a.name]}.shape[1]):")
                w(f"    {whole[a.name]}[r, c] = {a.name}_data[row, c]")
            elif len(a.shape) == 1 or not array_op(w, "copy", len(a.shape) - 1, f"{whole[a.name]}[r]",
                                                     f"{a.name}_data[row]"):
                w(f"{whole[a.name]}[r] = {a.name}_data[row]")
        w.dedent()
        for a in inputs:
            w(f"{a.name} = rows({whole[a.name]}, nb)")
        w.dedent()


def _batch_rows(sched, whole) -> list:
    """The lines viewing the leading ``nb`` rows of the batch buffers but the gathered inputs."""
    gathered = {a.name for a in batched_inputs(sched)}
    return [f"{name} = rows({all_rows}, nb)" for name, all_rows in whole.items() if name not in gathered]


def emit_train_epoch(sched, helpers: set | None = None, carving: Carving | None = None) -> str:
    """Mini-batches of ``order`` (the caller's shuffled order) inside compiled code.

    The gradient step's statements are written into the batch loop rather than called:
    inline, LLVM specialises them to the carved buffers' constant shapes (and before
    codegen/linking.py, Numba compiled a callee's code again inside each caller); in a long
    program, runs of them printed alike more than once are calls (codegen/outline.py). Batch k
    (from 0) runs with the hyperparameters ``<h>_per_step[k]`` and, when the graph reads the
    training ``step`` input, with step = (the fed step) + k: what k single steps would feed. With
    plain SGD the weight-gradient products apply the update themselves (codegen/fuse_update.py)
    and ``apply_update`` runs on the rest of the flat vectors.
    """
    w = Writer(sched.dtype)
    prog = sched.grad_step
    taken = {a.name for a in prog.args} | set(sched.update.hyper)

    def unique(name):
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    whole = {a.name: unique(f"{a.name}_all") for a in prog.args if a.batched and a.role in ("input", "temp")}
    k, step_in = unique("k_batch"), _step_input(prog)
    carving = carving or Carving.of(sched)
    carves, folded = _epoch_carves(sched, carving, whole), []

    def fold(steps, writer):   # plain SGD applied by the weight-gradient products (fuse_update.py)
        plan = fold_sgd(sched, steps, writer)
        folded.append(plan)
        return steps if plan is None else plan.steps

    gathered = {whole[a.name] for a in batched_inputs(sched)}   # the gather fills them: carved first
    movable = [line for line in carves if line.split(" = ")[0] not in gathered] + _batch_rows(sched, whole)
    body, moved = _epoch_body(sched, helpers, movable, fold)
    for line in carves:
        if line not in moved:
            w(line)
    _batch_loop_head(w, sched, k, step_in, unique)
    _gather_batch(w, sched, whole, unique)
    for line in _batch_rows(sched, whole):
        if line not in moved:
            w(line)
    w("# -- grad_step's statements --")
    w.dedent()
    tail = _batch_end(sched, prog, folded[-1])
    doc = (f'{INDENT}"""One epoch: batches order[start:start + batch_size], gathered into the batch buffers; '
           f'returns the summed loss."""')
    if helpers is not None:
        helpers |= w.printer.helpers
    params = train_epoch_args(sched, carving)
    return "\n".join([jit_decorator(), f"def train_epoch({', '.join(params)}):", doc,
                      *w.lines, *[INDENT + line if line else "" for line in body], *tail.lines]) + "\n"


def _batch_loop_head(w, sched, k, step_in, unique):
    """The summed loss, and the batch loop's first lines: the batch's size ``nb``, its number
    ``k``, its hyperparameters and training step; ``w`` is left inside the loop."""
    w("total = 0.0")
    if step_in:
        first = unique("first_step")
        w(f"{first} = {step_in}[0]  # the step fed for the first batch")
    w("for start in range(0, order.shape[0], batch_size):")
    w.indent()
    w("stop = min(start + batch_size, order.shape[0])")
    w("nb = stop - start  # the last batch may be short: it uses the buffers' leading rows")
    w(f"{k} = start // batch_size")
    if step_in:
        w(f"{step_in}[0] = {first} + {k}")
    for h in sched.update.hyper:
        w(f"{h} = {h}_per_step[{k}]")


def _epoch_body(sched, helpers, movable, fold) -> tuple:
    """(grad_step's statements for the batch loop, the lines of ``movable`` — carves and batch
    rows — they print themselves): in a long program, runs alike as segment calls, each printing
    the carves and rows it reads (codegen/outline.py); else as printed, and none."""
    prog = sched.grad_step
    if should_outline(prog):
        body = program_lines(prog, sched.dtype, helpers, finish=fold, outline_views=movable)
        if body is not None:
            return body, set(movable)
    return program_lines(prog, sched.dtype, helpers, finish=fold), set()


def _epoch_carves(sched, carving, whole) -> list:
    """train_epoch's first lines: the batch buffers (``batch_size`` rows, named by ``whole``), the
    other temporaries, the parameters and gradients, carved from the workspace and flat vectors."""
    owned = [a.name for a in batched_inputs(sched)] + [a.name for a in sched.grad_step.args if carving.carves(a)]
    return carving.lines(owned, "batch_size", lambda n: whole.get(n, n))


def _batch_end(sched, prog, folded) -> Writer:
    """The end of train_epoch's batch loop (the update, the summed loss) and its return."""
    tail = Writer(sched.dtype)
    tail.indent()
    tail(f"loss = {prog.returns}")
    tail("step += 1")
    args = update_args(sched.update)
    if folded is None:
        tail(f"apply_update({', '.join(args)})")
    else:   # the parameters the products did not update (biases, scalars, tiny products)
        for lo, hi in folded.ranges:
            part = [f"rows_at({a}, {lo}, {hi - lo})" for a in args[:2]]   # not a slice: one compile per place
            tail(f"apply_update({', '.join([*part, *args[2:]])})")
    tail("total += loss * nb")
    tail.dedent()
    tail("return total")
    return tail
