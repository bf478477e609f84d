"""Boley's deltaNN net (2-layer tanh, bias rows) as a graphnn model file.

    graphnn derive examples/boley_deltann.py --wrt W --wrt V --values --view matrix
    python examples/boley_deltann.py            # the same, printed

The matrix view prints his steps in the row-vector convention: dE_dz = z − t,
dz_dzhat = 1 − z², dE_dW = [1, y]ᵀ dE_dzhat, dE_dy = (dE_dzhat Wᵀ) without the bias
column, dE_dyhat = dE_dy ⊙ (1 − y²), dE_dV = [1, x]ᵀ dE_dyhat.
"""
from graphnn.derive import derive
from graphnn.derive.course import boley_net


def build():
    return boley_net()


if __name__ == "__main__":
    print(derive(build(), ["W", "V"], values=True, view="matrix", update=True).to_text())
