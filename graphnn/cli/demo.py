"""``graphnn demo``: the three uses of one declared graph, on the embedded data.

1. the lecture: Mazur's ∂E_total/∂w5, derived step by step with numbers;
2. the training run: the digits MLP compiled with Numba (or the NumPy reference);
3. the picture: Mazur's net as the textbook neuron diagram, with values and gradients.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def register(sub):
    p = sub.add_parser("demo", help="derive, train and draw on the embedded data (a tour)")
    p.add_argument("--backend", default="cpu", help="cpu (Numba, default) or numpy (reference)")
    p.add_argument("--epochs", type=int, default=10, help="digits MLP epochs (default 10)")
    p.add_argument("-o", "--out", default="graphnn-demo", help="folder for the files it writes")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    from ..derive import derive
    from ..draw import draw, save
    from ..models import get_model
    from ..training import Trainer

    from ..training import BACKENDS

    if args.backend not in BACKENDS:   # checked before section 1 writes anything, as train does
        raise ValueError(f"--backend {args.backend}: unknown backend; available: {', '.join(sorted(BACKENDS))}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file where the folder should be, a place that takes no folder
        raise OSError(f"--out {args.out}: cannot make the folder for the demo's files "
                      f"({e.strerror or e}{': ' + str(e.filename) if e.filename else ''})") from None
    mazur = get_model("mazur")

    _banner("1. The lecture: backprop through Mazur's 2-2-2 net, read from the autodiff record")
    lecture = derive(mazur.loss, "w5", values=mazur.example, update=True, model=mazur)
    print(lecture.to_text())
    lecture.save(out / "mazur_w5.html")
    lecture.save(out / "mazur_w5.tex")

    _banner(f"2. Training: the digits MLP (64-128-10, tanh) on the embedded 8x8 digits, backend {args.backend}")
    digits = get_model("digits-mlp")
    trainer = Trainer(digits, backend=args.backend)
    trainer.fit(epochs=args.epochs, log=lambda row: print(
        f"epoch {row['epoch']:>3}  CE {row['loss']:.4f}  test accuracy {row.get('test_accuracy', float('nan')):.4f}"),
        progress=False)
    print(f"test accuracy: {trainer.accuracy('test'):.4f}")

    _banner("3. The picture: Mazur's net with values and gradients")
    picture = draw(mazur, view="neurons", values="example", grads=True)
    target = out / ("mazur_neurons.svg" if shutil.which("dot") else "mazur_neurons.dot")
    save(picture, target)
    print(f"wrote {target}" + ("" if shutil.which("dot") else "  (install graphviz's `dot` for SVG)"))
    print(f"\nfiles in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))


def _banner(text):
    print(f"\n{text}\n{'-' * len(text)}")
