"""``graphnn sample MODEL --prompt TEXT``: text from a trained language model's checkpoint."""
from __future__ import annotations

from .common import add_model_arguments, positive, resolve_model, whole


def register(sub):
    p = sub.add_parser("sample", help="continue a prompt with a trained language model (the transformer)")
    add_model_arguments(p, "sample")
    p.add_argument("--prompt", default="\n", help="the text to continue (default: a new line)")
    p.add_argument("--length", type=whole(1), default=300, help="characters to generate (default 300)")
    p.add_argument("--temperature", type=positive, default=0.8,
                   help="divides the logits before the softmax: < 1 safer, > 1 wilder (default 0.8)")
    p.add_argument("--seed", type=whole(0), default=0, help="seed of the draws")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="parameters saved by graphnn train MODEL (default: MODEL.npz, where training saves them)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args):
    from ..training.language import default_checkpoint, sample_from_checkpoint

    model = resolve_model(args)
    if "vocab" not in model.extras:
        raise ValueError(f"model {model.name!r} is not a language model (task {model.task!r}); "
                         "graphnn sample continues text with one, e.g. the transformer")
    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    path = args.checkpoint or default_checkpoint(model)
    print(sample_from_checkpoint(model, path, prompt=args.prompt, length=args.length,
                                 temperature=args.temperature, seed=args.seed))
