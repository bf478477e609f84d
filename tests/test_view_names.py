"""One naming for every view: derive's forward, scalar, matrix and time views and the
drawings call each node by the same name (`graphnn.names.Names`).

Unnamed nodes were numbered u⁽ᵏ⁾ in the order a view asked for them, so the forward view's
u⁽¹⁾ was the scalar view's u⁽²⁾; drawings called an unnamed unit by its op ("sigmoid[1]")
where derivations wrote out⁽¹⁾, and Mazur's loss elements E_total_elements where the matrix
view wrote E_o."""
from __future__ import annotations

import pytest

import graphnn as gn
from graphnn.derive import derive
from graphnn import names as names_module
from graphnn.draw.context import DrawContext
from graphnn.errors import GraphnnError
from graphnn.models import available, get_model

DERIVE_VIEWS = ("forward", "scalar", "matrix", "time")
DRAW_VIEWS = ("ops", "neurons", "backward")


def _unnamed_chain():
    """tanh(3 σ(x W)): two unnamed nodes past the layer, each needing a u⁽ᵏ⁾ in the scalar view."""
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    y = gn.tanh(gn.sigmoid(x @ gn.parameter("W", [[0.1], [0.2]])) * 3.0)
    return gn.Model(name="unnamed-chain", loss=gn.losses.quadratic(y, t, name="E"), output=y, inputs=(x, t),
                    example={"x": [[1.0, 2.0]], "t": [[0.5]]})


def _names_per_view(monkeypatch, model) -> dict:
    """node → {view: {names that view called it}} over every derive and draw view that applies."""
    seen: dict = {}
    current = [None]

    def record(node, name):
        if name:
            seen.setdefault(node, {}).setdefault(current[0], set()).add(name)

    for method in ("tex", "element"):
        original = getattr(names_module.Names, method)

        def wrapped(self, node, *rest, _original=original):
            out = _original(self, node, *rest)
            if node.names is None:           # an element named by the model (w5) is no node name
                record(node, self.labels.get(node))
            return out
        monkeypatch.setattr(names_module.Names, method, wrapped)
    original_node_name = DrawContext.node_name

    def node_name(self, node):
        out = original_node_name(self, node)
        record(node, out)
        return out
    monkeypatch.setattr(DrawContext, "node_name", node_name)

    wrt = [p.name for p in model.graph.parameters if p.trainable] or None
    for view in DERIVE_VIEWS:
        current[0] = f"derive {view}"
        try:
            derive(model, None if view == "forward" else wrt, values=True, view=view)
        except (GraphnnError, ValueError):   # a view that does not apply says so; names of the rest count
            pass
    for view in DRAW_VIEWS:
        current[0] = f"draw {view}"
        try:
            gn.draw(model, view=view, grads=model.loss is not None)
        except (GraphnnError, ValueError):
            pass
    return seen


@pytest.mark.parametrize("name", sorted(available()) + ["unnamed-chain"])
def test_every_view_calls_a_node_by_one_name(monkeypatch, name):
    model = _unnamed_chain() if name == "unnamed-chain" else get_model(name)
    seen = _names_per_view(monkeypatch, model)
    assert seen, "no view named anything"
    clashes = {f"{n.op.label(n)} {n.name or ''}".strip(): per for n, per in seen.items()
               if len(set().union(*per.values())) > 1}
    assert not clashes, clashes


def test_unnamed_nodes_are_numbered_by_graph_position_not_by_request():
    """The scalar view asks from the loss down, the forward view from the inputs up: u⁽ᵏ⁾
    follows the graph (from the inputs), so both call tanh's operand u⁽¹⁾."""
    model = _unnamed_chain()
    text = derive(model, "W", values=True, view="scalar").to_text()
    assert "∂E/∂u⁽²⁾_1 · ∂u⁽²⁾_1/∂u⁽¹⁾_1 · ∂u⁽¹⁾_1/∂out⁽¹⁾_1" in text, text


def test_mazur_loss_elements_are_e_o_in_drawings_and_derivations():
    """The course's E_o1, E_o2 (Mazur): the vector is E_o in the matrix view and every drawing."""
    model = get_model("mazur")
    assert "E_o = ((target - out_o)²)/2" in derive(model, "W2", view="matrix").to_text()
    for view in ("ops", "backward"):
        src = gn.draw(model, view=view, grads=True).source
        assert "total_elements" not in src and "E<SUB>o</SUB>" in src, view
