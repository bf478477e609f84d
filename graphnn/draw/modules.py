"""Modules: the groups of a deep model merged by the names of their parameters, so a picture
of a Transformer can show one box per decoder block.

Layers name their parameters ``<layer>.W`` (graphnn.ops.layers) and a model that builds a
block of layers names them under the block (``block1.attn.W_Q``, ``block1.ffn.1.W``): the
first part of a dotted parameter name is its *module*. Consecutive groups (`groups.Group`,
in data-flow order) of one module merge into one group; a group without parameters (an
attention block) between two of the same module joins it, and so do ops outside every
group that feed only it (a layer norm's x̂) or whose operands come from it (a residual +).
Models without dotted names keep their groups as they are.
"""
from __future__ import annotations

import re

from .groups import Group
from .style import Html, h, nm


def _module(group) -> str | None:
    names = [m.name for m in group.members if m.kind == "parameter"]
    parts = {n.split(".", 1)[0] for n in names if n and "." in n}
    return parts.pop() if len(parts) == 1 and all(n and "." in n for n in names) else None


def merge_modules(groups: list, graph) -> list:
    """``groups`` with each run of one module's groups (and what they enclose) as one group."""
    groups = [g for g in groups if g.kind != "ops"]    # chains of ops: placed node by node below
    modules = [_module(g) for g in groups]
    # a parameterless group between two groups of one module belongs to it
    for i, grp in enumerate(groups):
        if modules[i] is None and not any(m.kind == "parameter" for m in grp.members):
            before = next((m for m in reversed(modules[:i]) if m is not None), None)
            after = next((m for m in modules[i + 1:] if m is not None), None)
            if before is not None and before == after:
                modules[i] = before
    merged, owner = [], {}
    for grp, module in zip(groups, modules):
        if module is not None and merged and merged[-1].key == f"module_{module}":
            merged[-1].members.extend(grp.members)
        elif module is not None:
            merged.append(Group(f"module_{module}", h(nm(module)), list(grp.members), "module"))
        else:
            merged.append(grp)
        owner.update((m, merged[-1]) for m in grp.members)
    _place_free(graph, merged, owner)
    order = graph.index
    for grp in merged:
        grp.members.sort(key=order.get)
    _renumber_layers(merged)
    return merged


def _renumber_layers(merged):
    """Layer k counts the boxes above it (a merged block is one), not the layers merged away:
    the Transformer's head is "layer 5: linear", not "layer 13"."""
    for position, grp in enumerate(merged, start=1):
        if grp.kind == "layer" and re.match(r"layer \d+: ", grp.title):
            grp.title = Html(re.sub(r"^layer \d+: ", f"layer {position}: ", grp.title))


def _place_free(graph, merged, owner):
    """Ops and constants outside every group: one whose uses all lie in one module joins it
    (a layer norm's x̂, an attention mask); else an op joins the module its latest operand
    comes from (a residual +)."""
    users = graph.consumers()
    place = {id(grp): k for k, grp in enumerate(merged)}
    free = [n for n in graph.nodes if n not in owner and n.kind in ("op", "constant")]
    grouped = set(owner)
    for n in free:
        homes = {id(owner[c]): owner[c] for c, _ in users[n] if c in grouped}
        if len(homes) == 1 and all(c in grouped for c, _ in users[n]):
            home = next(iter(homes.values()))
            if home.kind == "module":
                home.members.append(n)
                owner[n] = home
    for n in free:
        if n.kind == "op" and n not in owner:
            homes = sorted((owner[x] for x in n.inputs if x in owner), key=lambda grp: place[id(grp)])
            if homes and homes[-1].kind == "module":
                homes[-1].members.append(n)
                owner[n] = homes[-1]


def groups_of(ctx, groups: list) -> list:
    """The view's groups: merged into modules when the fitting asks for option ``modules``."""
    return merge_modules(groups, ctx.graph) if ctx.options.get("modules") else groups
