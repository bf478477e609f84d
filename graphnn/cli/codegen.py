"""``graphnn codegen MODEL``: print the Numba module graphnn generates for a model."""
from __future__ import annotations

from .common import MODEL_OPTIONS, resolve_model


def register(sub):
    p = sub.add_parser("codegen", help="print the generated Numba source of a model (forward, "
                                       "grad_step, apply_update, train_epoch)")
    p.add_argument("model", nargs="?", help="a built-in model name or a Python file defining build()")
    for option, (flag, dest, metavar, commands) in MODEL_OPTIONS.items():
        if "codegen" in commands:
            p.add_argument(flag, type=int, metavar=metavar, dest=dest, help=f"the model's {option} option")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], help="default: the model's (sgd)")
    p.add_argument("--lr", type=float, help="learning rate (default: the model's)")
    p.add_argument("--schedule", action="store_true", help="print the lowered schedule instead of the source")
    p.add_argument("--cuda", action="store_true",
                   help="print the CUDA module (@cuda.jit kernels and host drivers) instead; no GPU needed")
    p.add_argument("--compile", action="store_true",
                   help="compile it into the cache now (what training calls: train_epoch, evaluate), report the "
                        "time, and print it; a later `graphnn train MODEL --backend cpu` starts compiled")
    p.add_argument("--verbose", action="store_true", help="show cache hits and misses")
    p.add_argument("--cache-info", action="store_true", help="print the cache directory and its contents")
    p.add_argument("--clear-cache", action="store_true", help="delete every cached generated module")
    p.set_defaults(func=cmd_codegen)


def cmd_codegen(args):
    import codegen

    if args.clear_cache:
        print(f"removed {codegen.clear_cache()} cached files")
    if args.cache_info:
        info = codegen.cache_info()
        print(f"cache directory: {info['dir']}  ({info['modules']} modules, {info['numba_indexes']} "
              f"compiled indexes, {info['plans']} plans, {info['bytes'] / 1e6:.1f} MB; "
              "set GRAPHNN_CACHE_DIR to move it)")
    if args.model is None:
        if not (args.cache_info or args.clear_cache):
            raise ValueError("name a model (graphnn models lists them), or use --cache-info / --clear-cache")
        return
    from ..optim import make_optimizer

    chosen = [flag for flag, on in (("--schedule", args.schedule), ("--cuda", args.cuda), ("--compile", args.compile))
              if on]
    if len(chosen) > 1:   # each prints something else: the first one given won, the rest were ignored
        raise ValueError(f"{' and '.join(chosen)} each choose what codegen prints: give one")
    model = resolve_model(args)
    if model.task == "perceptron":
        raise ValueError(f"{model.name!r} is trained by the perceptron rule, not by gradient descent: "
                         "there is no compiled training code for it")
    opt = make_optimizer(args.optimizer or model.defaults.get("optimizer", "sgd"),
                         lr=args.lr if args.lr is not None else model.defaults.get("lr"))
    schedule = codegen.lower(model, opt, args.dtype)
    if args.schedule:
        for prog in schedule.programs:
            print(f"== {prog.name}({', '.join(a.name for a in prog.args)})")
            for step in prog.steps:
                print(f"   {step}")
        print(f"== apply_update: {schedule.update}")
        return
    if args.cuda:
        from codegen.cuda.backend import cuda_source
        print(cuda_source(model, opt, args.dtype))
        return
    if args.compile or args.verbose:
        from codegen.background import compile_into_cache

        if model.data is None:
            raise ValueError(f"model {model.name!r} has no training data to compile its training functions for")
        done = compile_into_cache(model, opt, args.dtype, batch_size=model.defaults.get("batch_size"),
                                  report=lambda text: print(f"# {text}", flush=True), verbose=True)
        print(f"# {', '.join(done['functions'])} ready in {done['seconds']:.2f} s, cached in {done['path']}")
        print(done["source"])
        return
    print(codegen.emit_module(schedule, opt))
