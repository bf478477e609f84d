"""Groups that follow the model's structure, for the ops view's clusters and collapsed boxes.

Read off the IR, never declared by the model:

- an unrolled recurrence gives one group per **time step** (the nodes that step's copy of
  the cell built, with its input x_t);
- scaled dot-product attention — softmax(S) with S from Q·Kᵀ, and A·V after it — gives an
  **attention block**, and the parametric ops that make its Q, K and V from one input give
  one **projections** group;
- everything else that reads a parameter starts a **layer** (`layers.find_layers`);
- what follows the network's output up to the loss is the **loss** group.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph, Node
from ..looped import Loop
from ..ops import Count, Index, Linear, MatMul, Reshape, Softmax, Transpose
from ..recurrent import scans_in
from .labels import loss_formula, name_html, op_label
from .layers import find_layers
from .style import Html, h, nm

SHAPE_OPS = (Reshape, Transpose)


@dataclass
class Group:
    """A cluster: ``key`` names its Graphviz id, ``title`` is its label (HTML)."""

    key: str
    title: Html
    members: list = field(default_factory=list)
    kind: str = "layer"       # 'layer', 'step', 'block', 'projections', 'loss'

    @property
    def last(self) -> Node:
        ops = [m for m in self.members if m.kind == "op" and not isinstance(m.op, Count)]
        return ops[-1] if ops else self.members[-1]


@dataclass
class Attention:
    """One scaled dot-product attention found in a graph: its operands and its nodes."""

    q: Node
    k: Node
    v: Node
    nodes: list


def find_attention(graph: Graph) -> list[Attention]:
    """Every softmax(Q·Kᵀ / √d_k) V in ``graph``, matched by op class."""
    users = graph.consumers()
    found = []
    for a in graph.nodes:
        if not isinstance(a.op, Softmax):
            continue
        scaled = a.inputs[0]
        scores = next((x for x in [scaled] + list(scaled.inputs) if isinstance(x.op, MatMul)), None)
        outs = [c for c, pos in users[a] if isinstance(c.op, MatMul) and pos == 0]
        if scores is None or len(outs) != 1 or not isinstance(scores.inputs[1].op, Transpose):
            continue
        kt = scores.inputs[1]
        nodes = [kt, scores] + ([scaled] if scaled is not scores else []) + [a, outs[0]]
        nodes += _shape_tail(outs[0], users)
        found.append(Attention(scores.inputs[0], kt.inputs[0], outs[0].inputs[1], nodes))
    return found


def _shape_tail(node, users):
    """Reshapes/transposes that only rearrange ``node`` (the heads' merge) before it is used."""
    tail = []
    while len(users[node]) == 1 and isinstance(users[node][0][0].op, SHAPE_OPS):
        node = users[node][0][0]
        tail.append(node)
    return tail


def projection_of(node):
    """The parametric op that made ``node`` (through reshapes/transposes), and the path."""
    path = []
    while isinstance(node.op, SHAPE_OPS):
        path.append(node)
        node = node.inputs[0]
    if isinstance(node.op, (MatMul, Linear)) and any(x.kind == "parameter" for x in node.inputs):
        return node, path
    return None, []


def _step_groups(graph, taken):
    groups = []
    for scan in scans_in(graph):
        for t, built in enumerate(scan.steps, 1):
            members = [n for n in graph.nodes if n in built and n not in taken]
            inputs = [x for n in members for x in n.inputs
                      if isinstance(x.op, Index) and x not in taken and x.inputs[0] in scan.xs]
            members = list(dict.fromkeys(inputs + members))
            if members:
                taken.update(members)
                groups.append(Group(f"step{t}", h("time step ", str(t)), members, "step"))
    return groups


def _attention_groups(graph, taken):
    groups = []
    for k, att in enumerate(find_attention(graph), 1):
        projections = []
        for role, operand in (("Q", att.q), ("K", att.k), ("V", att.v)):
            anchor, path = projection_of(operand)
            if anchor is not None and anchor not in taken:
                params = [x for x in anchor.inputs if x.kind == "parameter"]
                projections.append((role, anchor, params, path))
        if len(projections) > 1:
            members = [m for _, anchor, params, path in projections for m in params + [anchor] + path[::-1]]
            weights = ", ".join(nm(p.name) for _, _, params, _ in projections for p in params[:1])
            title = h(", ".join(r for r, *_ in projections), " projections (", Html(weights), ")")
            taken.update(members)
            groups.append(Group(f"proj{k}", title, members, "projections"))
        members = [n for n in att.nodes if n not in taken]
        taken.update(members)
        groups.append(Group(f"attn{k}", h("attention: softmax(Q K", Html("<SUP>T</SUP>"), "/√d",
                                          Html("<SUB>k</SUB>"), ") V"), members, "block"))
    return groups


def _loss_group(graph, output, loss, taken):
    if loss is None or output is None or loss not in graph:
        return []
    net = set(Graph([output]).nodes)
    members = [n for n in Graph([loss]).nodes if n not in net and n not in taken]
    if not members:
        return []
    taken.update(members)
    formula = loss_formula(loss, output)
    title = h("loss ", name_html(loss), " = ", formula) if formula is not None else h("loss")
    return [Group("loss", title, members, "loss")]


def _layer_title(layer) -> Html:
    ops = " → ".join(op_label(m) for m in layer.members
                     if m.kind == "op" and not isinstance(m.op, (Transpose, Loop)))
    loops = [m for m in layer.members if isinstance(m.op, Loop)]
    if loops:
        return h("recurrence over T = ", str(loops[0].attrs["length"]), " steps")
    return h(f"layer {layer.number}: ", Html(ops))


def find_groups(graph: Graph, output: Node | None = None, loss: Node | None = None) -> list[Group]:
    """The graph's groups in the order the data flows: steps, attention, layers, loss."""
    taken: set = set()
    groups = _step_groups(graph, taken) + _attention_groups(graph, taken)
    loss_part = _loss_group(graph, output, loss, taken)
    for layer in find_layers(graph, end=output, taken=taken):
        groups.append(Group(f"layer{layer.number}", _layer_title(layer), layer.members, "layer"))
    groups += _chain_groups(graph, taken)
    _attach_counts(graph, groups, loss_part, taken)
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups.sort(key=lambda g: min(order[m] for m in g.members if m.kind == "op") if any(
        m.kind == "op" for m in g.members) else len(order))
    return groups + loss_part


def _chain_groups(graph, taken):
    """Runs of two or more ungrouped ops, each feeding only the next (a residual +, tanh,
    a mean): one group each, titled by their op chain."""
    users = graph.consumers()
    free = [n for n in graph.nodes if n.kind == "op" and n not in taken and not isinstance(n.op, Count)]
    groups, seen = [], set()
    for n in free:
        if n in seen:
            continue
        chain = [n]
        while True:
            nxt = [c for c, _ in users[chain[-1]] if not isinstance(c.op, Count)]
            if len(nxt) != 1 or nxt[0] in taken or nxt[0] in seen or nxt[0] not in free:
                break
            chain.append(nxt[0])
        seen.update(chain)
        if len(chain) > 1:
            taken.update(chain)
            title = Html(" → ".join(op_label(m) for m in chain))
            groups.append(Group(f"ops{len(groups) + 1}", title, chain, "ops"))
    return groups


def _attach_counts(graph, groups, loss_part, taken):
    """A run-time count n (for a mean) goes with the op that divides by it."""
    member_of = {m: grp for grp in groups + loss_part for m in grp.members}
    for n in graph.nodes:
        if isinstance(n.op, Count) and n not in taken:
            users = [grp for grp in (member_of.get(c) for c in graph.nodes if n in c.inputs) if grp]
            if users:
                users[0].members.append(n)
                taken.add(n)
