"""Reading layer structure off the IR, for clusters (ops view) and units (neurons view).

Nothing here is declared by the model: a *layer* is found, not named. An op that reads a
parameter (linear, matmul, a convolution) starts a layer; the elementwise/pooling/reshape
ops that follow it alone join it, until the next parametric op, a fan-out, or the
network's output. The neurons view needs more: a chain input → linear → activation →
linear → …, where every unit is an element of a layer's activation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph, Node
from ..ops import Linear, Map, Transpose
from .context import DrawError


@dataclass
class Layer:
    """A cluster of the ops view: its parametric op (anchor) and the nodes that go with it."""

    number: int
    anchor: Node
    members: list = field(default_factory=list)

    @property
    def last(self) -> Node:
        return [m for m in self.members if m.kind == "op"][-1]

    def title(self) -> str:
        ops = " → ".join(m.op.label(m) for m in self.members if m.kind == "op" and not isinstance(m.op, Transpose))
        return f"layer {self.number}: {ops}"


def _only_leaves(node: Node, kinds=("parameter", "constant")) -> bool:
    return node.kind == "op" and all(x.kind in kinds for x in node.inputs)


def find_layers(graph: Graph, end: Node | None = None, taken: set | None = None) -> list[Layer]:
    """The layers of ``graph`` in graph order; ``end`` (the network's output) closes the last.

    Nodes in ``taken`` (already grouped otherwise) join no layer; the set is updated. A
    weight's preparation (a tied decoder's Wᵀ) joins the layer that reads it, never
    starts one of its own.
    """
    users = graph.consumers()
    taken = set() if taken is None else taken
    layers = []
    for node in graph.nodes:
        if node.kind != "op" or node in taken or not any(x.kind == "parameter" for x in node.inputs):
            continue
        if _only_leaves(node) and len(users[node]) == 1 and users[node][0][0] not in taken:
            continue   # weight preparation: its consumer's layer takes it
        layer = Layer(len(layers) + 1, node)
        for x in node.inputs:   # its weights, and weight preparation used only here (tied Wᵀ)
            if x in taken:
                continue
            if x.kind == "parameter" or (_only_leaves(x) and len(users[x]) == 1):
                layer.members += [p for p in x.inputs if p.kind == "parameter" and p not in taken]
                layer.members.append(x)
        layer.members.append(node)
        current = node
        while current is not end:
            nxt = {c for c, _ in users[current]}
            if len(nxt) != 1:
                break
            c = users[current][0][0]
            others = [x for x in c.inputs if x is not current]
            if c in taken or any(x.kind not in ("parameter", "constant") for x in others):
                break
            if any(x.kind == "parameter" for x in others) and not isinstance(c.op, Map):
                break   # a second parametric op starts its own layer
            layer.members += [x for x in others if x.kind == "parameter" and x not in taken]
            layer.members.append(c)
            current = c
        layer.members = list(dict.fromkeys(layer.members))
        taken.update(layer.members)
        layers.append(layer)
    return layers


# -- the neurons view's chain ------------------------------------------------------------

@dataclass
class DenseLayer:
    """One layer of units: net = x @ W + b (the ``linear`` node), out = act(net)."""

    linear: Node
    activation: Node | None

    @property
    def weights(self) -> Node:
        return self.linear.inputs[1]

    @property
    def bias(self) -> Node:
        return self.linear.inputs[2]

    @property
    def out(self) -> Node:
        return self.activation if self.activation is not None else self.linear

    @property
    def width(self) -> int:
        return self.linear.shape[-1]

    @property
    def act_name(self) -> str:
        return self.activation.op.label(self.activation) if self.activation is not None else "linear"


def _is_dense(node: Node, source: Node) -> bool:
    if not isinstance(node.op, Linear) or node.inputs[0] is not source:
        return False
    x, w, b = node.inputs
    return (len(x.shape) == 2 and x.shape[0] is None and len(w.shape) == 2
            and len(node.shape) == 2 and b.ndim <= 2)


def _activation_of(lin: Node, users) -> Node | None:
    acts = [c for c, pos in users[lin] if isinstance(c.op, Map) and pos == 0 and len(c.shape) == 2
            and tuple(c.shape) == tuple(lin.shape)
            and all(x.kind in ("parameter", "constant") for x in c.inputs[1:])]
    return acts[0] if len(acts) == 1 else None


def dense_chain(graph: Graph, output: Node | None = None, name: str = "this graph"):
    """(input node, [DenseLayer, …]) for a net built as input → linear → act → linear → …

    Raises DrawError, suggesting the ops view, when the graph does not have that shape.
    """
    users = graph.consumers()
    starts = [n for n in graph.nodes if isinstance(n.op, Linear) and n.inputs[0].kind == "input"
              and _is_dense(n, n.inputs[0])]
    if not starts:
        ops = sorted({n.op.name for n in graph.nodes if n.kind == "op"})
        raise DrawError(f"the neurons view draws nets built as input → linear → activation → linear → …, "
                        f"but {name} has no linear layer fed directly by an input (its ops: "
                        f"{', '.join(ops)}); draw it with view='ops' (graphnn draw --view ops)")
    source = starts[0].inputs[0]
    layers, lin = [], starts[0]
    while lin is not None:
        layer = DenseLayer(lin, _activation_of(lin, users) if lin is not output else None)
        layers.append(layer)
        if layer.out is output:
            break
        nxt = [c for c, _ in users[layer.out] if _is_dense(c, layer.out)]
        lin = nxt[0] if len(nxt) == 1 else None
    _check_nothing_left_out(graph, source, layers, output, name)
    return source, layers


def _check_nothing_left_out(graph, source, layers, output, name):
    """Refuse to draw units for a net that has more than the chain (a silent omission).

    Ops *after* the chain's last layer (softmax, the loss) are fine: the view summarises them.
    """
    covered = {source}
    for layer in layers:
        covered.update(Graph([layer.weights, layer.bias]).nodes)
        covered.add(layer.linear)
        if layer.activation is not None:
            covered.update(layer.activation.inputs)
            covered.add(layer.activation)
    end = layers[-1].out
    after = {end}
    for n in graph.nodes:
        if any(x in after for x in n.inputs):
            after.add(n)
    net = Graph([output]).nodes if output is not None else Graph([end]).nodes
    extra = [n for n in net if n not in covered and n not in after]
    if extra:
        what = ", ".join(sorted({n.op.label(n) + (f" {n.name!r}" if n.name else "") for n in extra}))
        raise DrawError(f"the neurons view draws input → linear → activation chains, but {name}'s network "
                        f"also has {what}, which one circle per unit cannot show; draw it with "
                        "view='ops' (graphnn draw --view ops)")
