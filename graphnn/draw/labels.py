"""What an op box says, in the course's notation: the op's label, or its formula when the
label alone would hide a number (``1 − v``, ``3·v``), and the loss in the model's own names
(``E_total = Σ ½(target − out_o)²``). `graphnn show` prints the same text.
"""
from __future__ import annotations

from ..graph import Node
from ..notation import expr_html, expr_text
from ..looped import Loop
from ..ops import Count, Map, OpTable, SoftmaxCrossEntropy, Sum, Transpose
from ..ops.elementwise import V
from .style import Html, esc, h, nm

#: a Map built by these operator builders lost a number if it has one operand: 1 − v, 3·v
ARITHMETIC = ("+", "−", "×", "÷", "pow")


def shows_formula(node: Node) -> bool:
    """True for an arithmetic Map that folded a number into its expression (x·3, 1 − x)."""
    return (isinstance(node.op, Map) and node.op.label(node) in ARITHMETIC
            and len(node.inputs) < 2)


def operand_names(node: Node, ids=None) -> dict:
    """v_i → what to call operand i: ``ids[x]`` ('%3' in `show`), else its name, else v."""
    names = {}
    for i, x in enumerate(node.inputs):
        if ids is not None:
            names[V[i]] = ids[x]
        else:
            names[V[i]] = x.name or ("v" if len(node.inputs) == 1 else f"v{i}")
    return names


#: op class -> what a drawing calls the op where its own label is too terse to see on a slide
DRAWN_LABELS = OpTable("drawing label", {
    Transpose: lambda n: "(·)ᵀ" if _swaps_last_two(n.attrs["axes"]) else f"transpose {n.attrs['axes']}",
    Loop: lambda n: f"loop over T = {n.attrs['length']} steps",
})


def _swaps_last_two(axes) -> bool:
    k = len(axes)
    return k < 2 or tuple(axes) == tuple(range(k - 2)) + (k - 1, k - 2)


def op_label(node: Node, ids=None, html: bool = True):
    """The op's label; its formula when it holds a constant (``ids``: operand texts)."""
    if shows_formula(node):
        expr = node.attrs["expr"]
        if html:
            return Html(expr_html(expr, operand_names(node, ids)))
        return expr_text(expr, operand_names(node, ids))
    drawn = DRAWN_LABELS.get(node.op)
    text = drawn(node) if drawn is not None and html else node.op.label(node)
    return esc(text) if html else text


def name_html(node: Node, ctx=None) -> Html:
    """A node's name with real subscripts; an unnamed node by its op's label (never parsed as
    a name: softmax_cross_entropy keeps its underscores). With a `DrawContext`, the name is
    ``ctx.node_name(node)``: the derivations' course name where the user gave none."""
    name = ctx.node_name(node) if ctx is not None else node.name
    return nm(name) if name else esc(node.op.label(node))


# -- the loss in the model's names -----------------------------------------------------------

def _map_formula(node, names):
    return Html(expr_html(node.attrs["expr"], {V[i]: names(x) for i, x in enumerate(node.inputs)}))


def _sce_formula(node, names):
    z, t = node.inputs
    return h("−Σ ", nm(names(t)), " · log softmax(", nm(names(z)), ")")


#: op class -> formula of one loss element in the operands' names (a Map prints its expression)
ELEMENT_FORMULAS = OpTable("loss element formula", {Map: _map_formula, SoftmaxCrossEntropy: _sce_formula})


def loss_formula(loss: Node | None, output: Node | None = None, ctx=None) -> Html | None:
    """``Σ ½(target − out_o)²`` for a loss that sums (or averages) a per-element formula of
    the network's output and the targets; None for a loss of another shape. With a
    `DrawContext`, operands are called by ``ctx.node_name`` (the derivations' names)."""
    if loss is None:
        return None
    prefix, inner = "", loss
    if isinstance(loss.op, Map) and len(loss.inputs) == 2 and isinstance(loss.inputs[1].op, Count):
        prefix, inner = "mean of ", loss.inputs[0]     # a mean: Σ … / n
    if isinstance(inner.op, Sum):
        prefix, inner = (prefix or "Σ "), inner.inputs[0]
    elif prefix:
        return None
    rule = ELEMENT_FORMULAS.get(inner.op)
    if rule is None or any(x.kind == "op" and not x.name and x is not output for x in inner.inputs):
        return None
    def names(x):
        name = ctx.node_name(x) if ctx is not None else x.name
        return name or ("y" if x is output else x.op.label(x))
    return h(prefix, rule(inner, names))
