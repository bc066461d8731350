"""`r1kit update-routing`: its arguments and dispatch (the work: r1kit/train/routing.py)."""

from __future__ import annotations

import argparse
from typing import Callable


def cmd_update_routing(args: argparse.Namespace) -> None:
    from r1kit.train.routing import RoutingUpdate, update_routing

    knobs = ("n", "refresh_steps", "router_steps", "router_lr", "batch_size", "seed", "eval_n")
    opts = RoutingUpdate(**{k: getattr(args, k) for k in knobs if getattr(args, k) is not None})
    update_routing(args.checkpoint, args.data, args.out, opts, old_test=args.old_test, new_test=args.new_test,
                   device=args.device, overwrite=args.overwrite)


def add_update_routing(sub, at_least: Callable, positive_float: Callable) -> None:
    """The command's parser on `sub` (cli.py's subparsers), with cli.py's argument types."""
    p = sub.add_parser("update-routing", help="refresh a checkpoint's routing state (load EMA, biases) on new data without "
                       "training; --router-steps also fine-tunes the routers alone (r1kit/train/routing.py)")
    p.add_argument("checkpoint", help="checkpoint directory (with tokenizer.json)")
    p.add_argument("--data", required=True, help="JSONL of the new problems (their traces, for --router-steps)")
    p.add_argument("--out", required=True, help="the new checkpoint directory; an existing one is refused without --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds a checkpoint r1kit wrote")
    for flag, kind, what in (  # defaults and their reasons: RoutingUpdate in r1kit/train/routing.py
            ("--n", at_least(1), "first N problems of --data (default 2000)"),
            ("--refresh-steps", at_least(1), "batches of the no-gradient refresh (default 100)"),
            ("--router-steps", at_least(0), "router-only fine-tune steps before it, any balancing mode (default 0)"),
            ("--router-lr", positive_float, "their AdamW rate (default 1e-3)"), ("--batch-size", at_least(1), "default 32"),
            ("--eval-n", at_least(1), "problems of each test set (default 200)"), ("--seed", int, "batch order (default 0)")):
        p.add_argument(flag, type=kind, help=what)
    p.add_argument("--old-test", metavar="FILE", help="JSONL test set of the old distribution: accuracy before and after")
    p.add_argument("--new-test", metavar="FILE", help="JSONL test set of the new distribution: accuracy before and after")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_update_routing)
