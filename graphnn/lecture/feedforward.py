"""The lesson of a small feed-forward net, on the neurons picture (`draw(view='neurons')`).

Forward: one step per unit (its net and out, from the 'forward' derivation), then the loss.
Backward: one step per unit from the output back: its δ and the gradients of the weights
into it, the delta-rule lines of each weight's scalar derivation (`derive(…, 'w5')`, read
from the autodiff record). Then the update (the derivations' update lines and the loss
after the step; the picture redrawn with the new weights gives the new numbers). A weight's
click target holds its whole derivation and the paths of `GradRecord.chains`, mapped onto
the picture's units and edges. Threshold units (perceptrons) have no gradient: their
backward steps are the perceptron rule, example by example (the derivation's own view).
"""
from __future__ import annotations

import numpy as np

from ..autodiff import grad
from ..derive import derive
from ..derive.perceptron import threshold_unit
from ..draw import draw
from ..draw.layers import dense_chain
from ..draw.neurons_view import LOSS_ID, bias_id, element_label, unit_id
from ..ops.base import broadcast_index
from . import fragments as fr
from .lesson import Lesson, shown
from .svg import picture


class FeedForward:
    """Builds the `Lesson` of a dense chain input → linear → activation → …"""

    def __init__(self, model, feeds, options):
        self.model, self.feeds, self.opt = model, feeds, options
        self.source, self.layers = dense_chain(model.graph, model.output, model.name)
        self.rule = threshold_unit(model.graph) is not None     # a perceptron: no gradient
        self.units = {}                  # node -> column k (0: the inputs), for path mapping
        self.units[self.source] = 0
        for k, layer in enumerate(self.layers, 1):
            self.units[layer.linear] = k
            if layer.activation is not None:
                self.units[layer.activation] = k
        self.elements = self._elements()
        self.derivations = {}
        self.records = {}

    # -- the parameters' elements: what one can click ------------------------------------------
    def _elements(self) -> list:
        """(name, node, index, column k, edge owner) of every weight and bias element drawn."""
        out = []
        for k, layer in enumerate(self.layers, 1):
            W, b = layer.weights, layer.bias
            for i in range(W.shape[0]):
                for j in range(W.shape[1]):
                    name = element_label(W, (i, j), W.label() or "w")
                    out.append((name, W, (i, j), k, f"{unit_id(k - 1, i)}->{unit_id(k, j)}"))
            for j in range(layer.width):
                index = broadcast_index((0, j), b.shape, 2)
                name = element_label(b, index, b.label() or "b")
                out.append((name, b, index, k, f"{bias_id(k - 1)}->{unit_id(k, j)}"))
        return out

    def redraw_params(self, params):
        """The picture at other weights (the update, the training snapshots)."""
        return picture(draw(self.model, view="neurons", values=self.feeds, grads=not self.rule, params=params,
                            precision=self.opt.picture_precision, max_units=10 ** 6))

    def derivation(self, node, index):
        key = (node, index)
        if key not in self.derivations:
            self.derivations[key] = derive(self.model, (node, index), values=self.feeds, update=node.trainable,
                                           precision=self.opt.precision)
        return self.derivations[key]

    # -- the lesson ----------------------------------------------------------------------------
    def build(self) -> Lesson:
        opt = self.opt
        what = "the perceptron rule" if self.rule else "backpropagation"
        lesson = Lesson(f"{self.model.name}: {what} step by step", self.model.name, "neurons")
        pic = lesson.pictures["main"] = self.redraw_params(None)
        given = pic.numbered(unit_id(0, 0)) + [k for j in range(self.source.shape[-1])
                                               for k in pic.numbered(unit_id(0, j))]
        given += [f"{owner}|0" for *_, owner in self.elements] + pic.key(LOSS_ID, lambda t: "," in t)
        lesson.hide_all_numbers(keep=given)
        forward = derive(self.model, view="forward", values=self.feeds, precision=opt.precision)
        self._intro(lesson, forward)
        self._forward(lesson, forward)
        if self.rule:
            self._perceptron_rule(lesson)
        else:
            self._backward(lesson)
            self._update(lesson, pic)
        self._clickable(lesson)
        return lesson

    def _intro(self, lesson, forward):
        sizes = "-".join(str(c.shape[-1]) for c in [self.source] + [layer.out for layer in self.layers])
        body = "".join(fr.item_html(forward, item) for item in forward.items if isinstance(item, str))
        rows = max((len(np.asarray(v)) for v in self.opt.all_feeds.values() if np.ndim(v)), default=1)
        rest = ("the perceptron rule then goes through all of them" if self.rule else
                "the derivations and the update are its own; the training uses all of them")
        first = (f"<p>The picture and the forward pass show the first of the model's {rows} examples; "
                 f"{rest}.</p>") if rows > 1 else ""
        text = (f"<p>{fr.prose_html(self.model.description or self.model.name)}</p>" + first +
                f"<p>A {sizes} net: {len(self.layers)} layer(s) of weights. Press → (or space) to run the "
                "forward pass unit by unit, then the backward pass δ by δ; click any weight for its "
                "derivation.</p>" + body)
        title = f"{fr.esc(self.model.name)}: the network and its worked example"
        lesson.add_step("intro", title, fr.panel(title, text))

    def _forward(self, lesson, forward):
        by_node: dict = {}
        for step in forward.steps:
            node, index = step.checks[0][0][1], step.checks[0][0][2]
            by_node.setdefault(node, []).append((index, step))
        used = set()
        for k, layer in enumerate(self.layers, 1):
            for j in range(layer.width):
                items = [s for n in (layer.linear, layer.activation) if n is not None
                         for idx, s in by_node.get(n, []) if idx[-1] == j]
                used.update(id(s) for s in items)
                out = element_label(layer.out, (0, j), layer.out.label() or "out")
                results = [(element_label(n, (0, j), n.label() or "net"), shown(s.value, self.opt.precision))
                           for s, n in zip(items, [layer.linear, layer.activation]) if n is not None]
                owner = unit_id(k, j)
                body = "".join(fr.step_html(forward, s) for s in items)
                panel = fr.panel(f"Forward pass: unit {fr.label_html(out)}", body, results)
                lesson.add_step("forward", f"Forward: unit {out}", panel,
                                show=lesson.pictures["main"].key(owner, lambda t: not t.startswith("δ")),
                                focus=[owner] + [e for e in self._edges_into(k, j)])
        rest = [s for s in forward.steps if id(s) not in used]
        loss = self.model.loss
        results = [(loss.label(), shown(rest[-1].value, self.opt.precision))] if rest else []
        lesson.add_step("forward", f"Forward: the loss {loss.label()}", fr.panel(
            f"Forward pass: the loss {fr.label_html(loss.label())}", "".join(fr.step_html(forward, s) for s in rest),
            results),
            show=lesson.pictures["main"].numbered(LOSS_ID), focus=[LOSS_ID] + self._edges_to_loss())

    def _edges_into(self, k, j) -> list:
        width = self.layers[k - 1].linear.inputs[0].shape[-1]
        return [f"{unit_id(k - 1, i)}->{unit_id(k, j)}" for i in range(width)] + [f"{bias_id(k - 1)}->{unit_id(k, j)}"]

    def _edges_to_loss(self) -> list:
        K = len(self.layers)
        return [f"{unit_id(K, j)}->{LOSS_ID}" for j in range(self.layers[-1].width)]

    def _backward(self, lesson):
        pic = lesson.pictures["main"]
        for k in range(len(self.layers), 0, -1):
            layer = self.layers[k - 1]
            for j in range(layer.width):
                incoming = [e for e in self.elements if e[3] == k and e[4].endswith(f"->{unit_id(k, j)}")]
                delta, grads = None, []
                for name, node, index, _, owner in incoming:
                    d = self.derivation(node, index)
                    if delta is None:
                        delta = next((s for s in d.steps if s.kind == "delta"
                                      and s.checks[0][0][1] is layer.linear and s.checks[0][0][2][-1] == j), None)
                        delta_d = d
                    if node.trainable:
                        grads.append((name, d, _gradient_step(d)))
                out = element_label(layer.out, (0, j), layer.out.label() or "out")
                body = (fr.step_html(delta_d, delta) if delta is not None else "") + \
                    "".join(fr.step_html(d, s) for _, d, s in grads)
                results = ([("δ_" + _suffix(element_label(layer.linear, (0, j), "net")),
                             shown(delta.value, self.opt.precision))] if delta is not None else []) + \
                    [(f"∂{self.model.loss.label()}/∂{n}", shown(s.value, self.opt.precision)) for n, _, s in grads]
                owner = unit_id(k, j)
                show = pic.key(owner, lambda t: t.startswith("δ"))
                show += [f"{e[4]}|1" for e in incoming]
                if j == layer.width - 1:
                    show += pic.numbered(f"L{k}caption")
                outgoing = ([f"{owner}->{unit_id(k + 1, i)}" for i in range(self.layers[k].width)]
                            if k < len(self.layers) else [f"{owner}->{LOSS_ID}"])
                lesson.add_step("backward", f"Backward: δ of unit {out}", fr.panel(
                    f"Backward pass: δ of unit {fr.label_html(out)} and the weights into it", body, results),
                    show=show, focus=[owner] + [e[4] for e in incoming], flow=outgoing)

    def _update(self, lesson, pic):
        items, after, new_params = [], None, {}
        for name, node, index, _, _ in self.elements:
            if not node.trainable:
                continue
            d = self.derivation(node, index)
            step = next(s for s in d.steps if s.kind == "update")
            items.append((name, d, step))
            after = next((s for s in d.steps if s.kind == "loss_after"), after)
            new_params.setdefault(node, node.value.astype(float).copy())[index] = step.value
        if not items:
            return
        loss = self.model.loss.label()
        results = [(f"{n}⁺", shown(s.value, self.opt.precision)) for n, _, s in items]
        if after is not None:
            results.append((f"{loss}⁺", shown(after.value, self.opt.precision)))
        d0 = items[0][1]
        header = next(i for i in d0.items if isinstance(i, str) and i.startswith("Update by"))
        body = fr.step_html(d0, header) + "".join(fr.step_html(d, s) for _, d, s in items)
        if after is not None:
            body += fr.step_html(d0, after)
        index = lesson.add_step("update", "Update: one step of gradient descent", fr.panel(
            "Update: every weight takes one step; the loss after it", body, results),
            focus=[e[4] for e in self.elements if e[1].trainable])
        lesson.relabel[index] = pic.changes(self.redraw_params(new_params))

    def _perceptron_rule(self, lesson):
        """No gradient: the rule's derivation over the example's rows, one step per example."""
        name, node, index, *_ = self.elements[0]
        d = derive(self.model, (node, index), values=self.opt.all_feeds, precision=self.opt.precision)
        groups: list = [[]]
        for item in d.items:
            if isinstance(item, str) and item.startswith("Example "):
                groups.append([])
            groups[-1].append(item)
        for k, group in enumerate(groups):
            title = "No gradient: the perceptron rule" if k == 0 else f"The perceptron rule: example {k}"
            name = None
            if k > 0:          # the picture of the example the rule is at
                name = f"example {k}"
                lesson.pictures[name] = picture(draw(
                    self.model, view="neurons", values=self.opt.all_feeds, example=k,
                    precision=self.opt.picture_precision, max_units=10 ** 6))
            lesson.add_step("backward", title, fr.panel(fr.esc(title), "".join(fr.step_html(d, i) for i in group)),
                            focus=[e[4] for e in self.elements], picture=name)
        self.rule_derivation = d

    # -- click targets -------------------------------------------------------------------------
    def _clickable(self, lesson):
        for name, node, index, k, owner in self.elements:
            if self.rule:
                d, paths = self.rule_derivation, [[owner, unit_id(k, 0), LOSS_ID]]
            else:
                d, paths = self.derivation(node, index), self.paths(node, index)
            counter = iter(range(1, 10 ** 6))
            tags = (lambda item: {"path": next(counter)} if getattr(item, "kind", None) == "path" else {})
            if name in lesson.weights:          # a shared bias: one element, an edge into every unit
                lesson.weights[name]["owners"].append(owner)
                continue
            note = "" if node.trainable else "<p class='note'>(fixed: training leaves it alone)</p>"
            title = "Derivation of " + fr.label_html(f"∂{self.model.loss.label()}/∂{name}")
            lesson.weights[name] = {"owners": [owner], "title": title, "html": note + fr.derivation_html(d, tags),
                                    "paths": paths}

    def paths(self, node, index) -> list:
        """The picture's owners (units, edges, loss) along each path of ∂loss/∂node[index]."""
        if node not in self.records:
            self.records[node] = grad(self.model.loss, [node]).record
        return [self._owners(path) for path in self.records[node].chains(node, index, batch=1)]

    def _owners(self, path) -> list:
        owners = []
        for link in path:
            c = self._unit(link.consumer, link.index)
            x = self._unit(link.input, link.in_index)
            if c is not None:
                k, j = c
                if x is not None and x != c:
                    owners.append(f"{unit_id(*x)}->{unit_id(k, j)}")
                elif x is None and link.input is self.layers[k - 1].weights:
                    owners.append(f"{unit_id(k - 1, link.in_index[0])}->{unit_id(k, j)}")
                elif x is None and link.input is self.layers[k - 1].bias:
                    owners.append(f"{bias_id(k - 1)}->{unit_id(k, j)}")
                owners.append(unit_id(k, j))
            elif x is not None:
                owners += [f"{unit_id(*x)}->{LOSS_ID}", LOSS_ID]
        return list(dict.fromkeys(owners))

    def _unit(self, node, index):
        k = self.units.get(node)
        return None if k is None else (k, index[-1])


def _suffix(net_name: str) -> str:
    return net_name[4:] if net_name.startswith("net_") else net_name



def _gradient_step(d):
    """The step that states ∂E/∂w: the delta form's last, else (a weight of the last layer
    under a plain sum or mean: no delta form) the chain rule's own."""
    return next((s for s in d.steps if s.kind == "gradient"), None) or \
        next(s for s in reversed(d.steps) if any(c[0] == "gradient" for c, _ in s.checks))
