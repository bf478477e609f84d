"""The lesson of a scalar recurrent net, on the unrolled picture (`draw(view='unrolled')`).

Forward: one step per time step (net_t and s_t from the 'forward' derivation), then the
loss. Backward: backprop through time for the first weight, term by term from the 'time'
derivation: each term is a path loss → s_T → … → s_k → w, its last edge explicit (∂⁺s_k/∂w,
step k's own use of w) and the others implicit (∂s_t/∂s_{t−1}); the page highlights them
in two colours. The picture is drawn once per weight (the unrolled view draws the paths of
one weight); clicking a weight shows its picture, its time derivation and its update.
"""
from __future__ import annotations

import numpy as np

from ..bptt import bptt_terms
from ..derive import derive
from ..draw import draw
from ..ops import Index
from . import fragments as fr
from .lesson import Lesson, shown
from .svg import picture

LOSS = "loss"


def _s(t) -> str:
    """The unrolled view's DOT id of state s_t (graphnn/draw/unrolled.py)."""
    return f"s{t}"


class Recurrent:
    """Builds the `Lesson` of a scan over scalar states (rnn-scalar)."""

    def __init__(self, model, feeds, options, scan):
        self.model, self.feeds, self.opt, self.scan = model, feeds, options, scan
        self.T = scan.length
        self.params = [f for f in scan.cell.free if f.kind == "parameter"]
        self.terms = {p: bptt_terms(model.loss, p, feeds, index=(), scan=scan) for p in self.params}
        self.scalar = {p: derive(model, p.name, values=feeds, update=p.trainable, precision=options.precision)
                       for p in self.params}

    def redraw(self, wrt, params=None):
        return picture(draw(self.model, view="unrolled", values=self.feeds, wrt=wrt.name, params=params,
                            precision=self.opt.picture_precision))

    def redraw_params(self, params):
        """The default weight's picture at other weights (the training snapshots)."""
        return self.redraw(self.first, params)

    def build(self) -> Lesson:
        lesson = Lesson(f"{self.model.name}: backpropagation through time, step by step", self.model.name,
                        "unrolled")
        for p in self.params:
            lesson.pictures[p.name] = self.redraw(p)
        first = self.first = next((p for p in self.params if p.trainable), self.params[0])
        lesson.picture = first.name
        for name in lesson.pictures:
            lesson.hide_all_numbers(name, keep=[f"{_s(0)}|1"])
        forward = derive(self.model, view="forward", values=self.feeds, precision=self.opt.precision)
        self._forward(lesson, forward)
        self._backward(lesson, first)
        self._update(lesson, first)
        for p in self.params:
            lesson.weights[p.name] = self._click_target(p)
        return lesson

    def _forward(self, lesson, forward):
        prose = "".join(fr.item_html(forward, i) for i in forward.items if isinstance(i, str))
        text = (f"<p>{fr.prose_html(self.model.description or self.model.name)}</p><p>The same cell runs T = {self.T} "
                "times; each step reads the previous state and its input. Press → for the forward pass, step "
                "by step, then backprop through time term by term; click a weight for its derivation.</p>" + prose)
        lesson.add_step("intro", f"{self.model.name}: the net unrolled in time", fr.panel(
            f"{fr.esc(self.model.name)}: the net unrolled over T = {self.T} steps", text))
        used = set()
        for t in range(1, self.T + 1):
            nodes = {n for n in self.scan.steps[t - 1] if not isinstance(n.op, Index)}
            items = [s for s in forward.steps if s.checks[0][0][1] in nodes]
            used.update(id(s) for s in items)
            results = [(s.checks[0][0][1].label(), shown(s.value, self.opt.precision)) for s in items]
            lesson.add_step("forward", f"Forward: step t = {t}", fr.panel(
                f"Forward pass: step t = {t}", "".join(fr.step_html(forward, s) for s in items), results),
                show=[f"{_s(t)}|1"], focus=[_s(t), f"{_s(t - 1)}->{_s(t)}", f"x{t}->{_s(t)}"])
        rest = [s for s in forward.steps if id(s) not in used and not isinstance(s.checks[0][0][1].op, Index)]
        loss = self.model.loss.label()
        results = [(loss, shown(rest[-1].value, self.opt.precision))] if rest else []
        lesson.add_step("forward", f"Forward: the loss {loss}", fr.panel(
            f"Forward pass: the loss {fr.label_html(loss)}", "".join(fr.step_html(forward, s) for s in rest), results),
            show=[f"{LOSS}|2"], focus=[LOSS, f"{_s(self.T)}->{LOSS}"])

    def _time(self, p):
        """The time derivation of ``p`` with each path step tagged by its term's kind."""
        d = derive(self.model, p.name, values=self.feeds, view="time", precision=self.opt.precision)
        terms = list(reversed(self.terms[p].terms))     # the view writes term T first
        paths = iter(range(len(terms)))
        tags = {}
        for item in d.items:
            if getattr(item, "kind", None) == "path":
                n = next(paths)
                tags[id(item)] = {"path": n, "term": terms[n].kind, "k": terms[n].k}
        return d, terms, tags

    def _path(self, p, k) -> list:
        """Owners of term k's path: loss → s_τ (each state the loss reads at τ ≥ k) → … → s_k → w."""
        direct = self.terms[p].direct
        owners = []
        for tau in range(self.T, k - 1, -1):
            if (direct[tau - 1] != 0).any():
                owners += [LOSS, f"{LOSS}->{_s(tau)}", _s(tau)]
            if tau > k:
                owners += [f"{_s(tau)}->{_s(tau - 1)}", _s(tau - 1)]
        return list(dict.fromkeys(owners + [f"{_s(k)}->w", "w"]))

    def _backward(self, lesson, p):
        d, terms, tags = self._time(p)
        rules = [i for i in d.items if getattr(i, "kind", None) == "rule" or isinstance(i, str)]
        title = f"Backward: how {self.model.loss.label()} depends on {p.name}"
        lesson.add_step("backward", title, fr.panel(fr.esc(title), "".join(fr.step_html(d, i) for i in rules)),
                        show=[f"{LOSS}->{_s(self.T)}|1"], focus=[LOSS, f"{LOSS}->{_s(self.T)}"], picture=p.name)
        for item in d.items:
            tag = tags.get(id(item))
            if tag is None:
                continue
            k, kind = tag["k"], tag["term"]
            path = self._path(p, k)
            show = [f"{o}|1" for o in path if "->" in o]
            title = f"Backward: term {k} of ∂{self.model.loss.label()}/∂{p.name} ({kind})"
            lesson.add_step("backward", title, fr.panel(
                fr.esc(title), fr.step_html(d, item, **tag), [(f"term_{k}", shown(item.value, self.opt.precision))]),
                show=show, focus=path, picture=p.name, term=kind, explicit=[f"{_s(k)}->w"],
                implicit=[o for o in path if o.count("->") == 1 and o.split("->")[0].startswith("s")
                          and o.split("->")[1].startswith("s")])
        total = next(i for i in d.items if getattr(i, "kind", None) == "sum")
        title = f"Backward: ∂{self.model.loss.label()}/∂{p.name}, the sum of the terms"
        lesson.add_step("backward", title, fr.panel(
            fr.esc(title), fr.step_html(d, total), [(f"∂{self.model.loss.label()}/∂{p.name}",
                                            shown(total.value, self.opt.precision))]),
            show=["total|1"], focus=["total", "w"], picture=p.name)

    def _update(self, lesson, first):
        items, after, new = [], None, {}
        for p in self.params:
            if not p.trainable:
                continue
            d = self.scalar[p]
            step = next(s for s in d.steps if s.kind == "update")
            items.append((p.name, d, step))
            after = next((s for s in d.steps if s.kind == "loss_after"), after)
            new[p] = step.value
        if not items:
            return
        loss = self.model.loss.label()
        results = [(f"{n}⁺", shown(s.value, self.opt.precision)) for n, _, s in items]
        results.append((f"{loss}⁺", shown(after.value, self.opt.precision)))
        d0 = items[0][1]
        header = next(i for i in d0.items if isinstance(i, str) and i.startswith("Update by"))
        body = fr.step_html(d0, header) + "".join(fr.step_html(d, s) for _, d, s in items) + fr.step_html(d0, after)
        index = lesson.add_step("update", "Update: one step of gradient descent", fr.panel(
            "Update: every weight takes one step; the loss after it", body, results),
            focus=["w", "p_rest"], picture=first.name)
        params = {p: np.full(p.shape, v, dtype=float) for p, v in new.items()}
        lesson.relabel[index] = lesson.pictures[first.name].changes(self.redraw(first, params))

    def _click_target(self, p) -> dict:
        d, terms, tags = self._time(p)
        html = fr.derivation_html(d, lambda item: tags.get(id(item), {}))
        scalar = self.scalar[p]
        update = [i for i in scalar.items if getattr(i, "kind", None) in ("update", "loss_after")
                  or (isinstance(i, str) and i.startswith(("Update by", "After one step")))]
        if update:
            html += '<div class="graphnn-doc">' + "".join(fr.step_html(scalar, i) for i in update) + "</div>"
        title = "Derivation of " + fr.label_html(f"∂{self.model.loss.label()}/∂{p.name}")
        return {"owners": ["w"], "picture": p.name, "title": title, "html": html,
                "paths": [self._path(p, t.k) for t in terms], "kinds": [t.kind for t in terms]}

