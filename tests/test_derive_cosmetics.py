"""Small things a derivation must not print: a value repeated (n = 1 = 1 = 1), a space
before a closing bracket (tanh(1.1 )), two numbers side by side with no · (1 (−2) reads as a
call), a negative factor in a chain of · without brackets (· − u₁u₂ ·), the same derivative
twice for --wrt w5,w5."""
from __future__ import annotations

import re
import textwrap

import pytest

from graphnn.derive import derive
from graphnn.models import available, get_model


def _forward(name):
    return derive(get_model(name), None, values=True, view="forward").to_text()


@pytest.mark.parametrize("name", ["linear-regression", "hopfield", "mazur", "xor"])
def test_no_value_is_written_twice(name):
    lines = _forward(name).splitlines()
    for above, line in zip(lines, lines[1:]):
        value = re.fullmatch(r"\s*=\s*(\S+)", line)
        if value:
            assert not re.search(rf"=\s*{re.escape(value.group(1))}\s*$", above), (name, above, line)


def test_linear_regression_count_and_hopfield_total_read_once():
    assert re.search(r"^\s*n = 1\n\s*L = ", _forward("linear-regression"), re.M)
    assert re.search(r"E_total = E\n\s*= 1\s*$", _forward("hopfield"))


@pytest.mark.parametrize("name", sorted(available()))
def test_no_space_before_a_closing_bracket_nor_numbers_side_by_side(name):
    text = _forward(name)
    assert not re.search(r"\S +\)", text), re.search(r".{30}\S +\).{10}", text)
    # 1 (-2), 0.5 (-0.46), (-1) 0: two numbers multiplied need the ·
    assert not re.search(r"(\d|\))\s+\(-\d|\(-[\d.]+\)\s+\d", text), re.search(r".{20}(\d|\))\s+\(-\d.{10}", text)


def test_hopfield_products_of_numbers_have_the_dot():
    text = _forward("hopfield")
    assert "1 · (-2)" in text and "(-1) · 0" in text


def test_rnn_time_view_has_no_stray_space():
    text = derive(get_model("rnn-scalar"), "w", values=True, view="time").to_text()
    assert "tanh(b + s_(t-1) w + u x_t)" in text and " )" not in text


def test_a_negative_factor_in_a_chain_is_bracketed(tmp_path):
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import graphnn as gn
        def build():
            x, t = gn.input("x", (None, 2)), gn.input("t", (None, 2))
            W1 = gn.parameter("W1", [[.1, -.2], [.4, .5]], names=[["a", "b"], ["c", "d"]])
            W2 = gn.parameter("W2", [[.7, .1], [-.8, .3]])
            y = gn.softmax(gn.matmul(gn.tanh(gn.matmul(x, W1)), W2))
            return gn.Model(name="neg", loss=gn.losses.quadratic(y, t, name="E"), output=y, inputs=(x, t),
                            example={"x": [[1.0, 2.0]], "t": [[0.3, 0.7]]})
    """))
    from graphnn.models import resolve
    text = derive(resolve(str(tmp_path / "net.py")), "a").to_text()
    assert "· (- u" in text and "· - " not in text, text


def test_a_target_asked_twice_is_derived_once():
    d = derive(get_model("mazur"), ["w5", "w5"], values=True)
    assert d.title.count(r"\partial w_{5}") == 1
    assert d.to_text() == derive(get_model("mazur"), "w5", values=True).to_text()


@pytest.mark.parametrize("name, wrt, element", [("rnn", "W", "W_(1,1)"), ("lstm", "W_f", "(W_f)_(1,1)")])
def test_time_view_of_a_matrix_names_the_element_it_derives(name, wrt, element):
    """The title read ∂CE/∂W while every line derived W_(1,1) alone, without saying so."""
    text = derive(get_model(name), wrt, values=True, view="time").to_text()
    title = text.splitlines()[0]
    assert title.startswith("Backpropagation: ∂") and f"/∂{element} (time view)" in title, title
    assert f"{wrt} has " in text and f"this view follows one, {element}" in text
    scalar = derive(get_model("rnn-scalar"), "w", values=True, view="time").to_text()
    assert scalar.splitlines()[0] == "Backpropagation: ∂E/∂w (time view)" and "follows one" not in scalar


@pytest.mark.parametrize("fmt", ["text", "latex"])
def test_a_negative_argument_keeps_one_pair_of_brackets(fmt):
    """rnn-scalar's second state read tanh((-0.499750)) (LaTeX: \\left(\\left(…\\right) \\right))."""
    d = derive(get_model("rnn-scalar"), None, values=True, view="forward")
    text = d.to_text() if fmt == "text" else d.to_latex()
    assert ("tanh(-0.499750)" if fmt == "text" else r"tanh{\left(-0.499750 \right)}") in text
    assert r"\left(\left(-" not in text and "tanh((" not in text
