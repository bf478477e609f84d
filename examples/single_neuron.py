"""APS360's single sigmoid neuron with squared error, as a graphnn model file.

    graphnn derive examples/single_neuron.py --wrt w2 --values
    python examples/single_neuron.py

prints dE/dw_p = ∂E/∂y · ∂y/∂a · ∂a/∂w_p = 2 (y − t) · y (1 − y) · x_p, the course's
dE/dw_p = 2 x_p (y − t) y (1 − y), then the numbers.
"""
from graphnn.derive import derive
from graphnn.derive.course import single_neuron


def build():
    return single_neuron()


if __name__ == "__main__":
    print(derive(build(), "w2", values=True, update=True).to_text())
