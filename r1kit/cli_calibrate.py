"""`r1kit calibrate`: its arguments and dispatch (the work: r1kit/calibrate.py)."""

from __future__ import annotations

import argparse
from typing import Callable


def cmd_calibrate(args: argparse.Namespace) -> None:
    from r1kit.calibrate import calibrate

    exits = None if args.exits is None else [int(k) for k in args.exits.split(",")]
    calibrate(args.checkpoint, args.data, n=args.n, exits=exits, max_new_tokens=args.max_new_tokens,
              max_loss=args.max_loss, fit_share=args.fit_share, seed=args.seed, device=args.device,
              overwrite=args.overwrite)


def add_calibrate(sub, at_least: Callable, fraction: Callable) -> None:
    """The command's parser on `sub` (cli.py's subparsers), with cli.py's argument types."""
    p = sub.add_parser("calibrate", help="fit the complexity-gated fast path (an early exit and its calibrated gate) on held-out "
                       "problems and store it in the checkpoint (fast_path.json; r1kit/calibrate.py)")
    p.add_argument("checkpoint", help="checkpoint directory, ideally trained with sft.early_exit_layers")
    p.add_argument("--data", required=True, help="JSONL of held-out problems with answers (never the training data)")
    p.add_argument("--n", type=at_least(20), default=1000, help="first N problems of --data (default 1000)")
    p.add_argument("--exits", metavar="K,K", help="early exits to measure, in blocks run (default: every one, 1 .. n_layers-1)")
    p.add_argument("--max-new-tokens", type=at_least(1), default=128)
    p.add_argument("--max-loss", type=fraction, default=0.01, help="accuracy loss the suggested threshold allows, by one standard error (default 0.01: 1 point)")
    p.add_argument("--fit-share", type=fraction, default=0.6,
                   help="share of the problems the estimator is fitted on; the rest measure its calibration (default 0.6)")
    p.add_argument("--seed", type=int, default=0, help="which problems are fitted on")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint's existing fast_path.json (an earlier calibration)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_calibrate)
