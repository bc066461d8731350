"""The `r1kit` command: one CLI, one sub-command per job. Dispatch only: each handler parses its
arguments and calls library code, importing heavy modules (torch) only when it runs."""

from __future__ import annotations

import argparse
import json
import sys


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML or JSON file; its 'model:' section if it has one, else the whole file")
    p.add_argument("--preset", help="start from a named preset (tiny, demo, llama-tiny)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. dim=128 moe.n_experts=8 attention.kind=dense")


def _model_config(args: argparse.Namespace):
    from r1kit.config import load_model_config

    return load_model_config(args.config, args.overrides, preset_name=args.preset)


def cmd_config(args: argparse.Namespace) -> None:
    cfg = _model_config(args)
    print(json.dumps(cfg.model_dump(), indent=2))


def cmd_init(args: argparse.Namespace) -> None:
    import torch

    from r1kit.checkpoint import save_pretrained
    from r1kit.model import Transformer

    cfg = _model_config(args)
    torch.manual_seed(args.seed)
    model = Transformer(cfg)
    save_pretrained(model, args.out)
    print(f"wrote a randomly initialised model ({model.num_params():,} parameters) to {args.out}")


def cmd_info(args: argparse.Namespace) -> None:
    from r1kit.checkpoint import load_pretrained

    model = load_pretrained(args.checkpoint)
    info = {
        "parameters": model.num_params(),
        "active_parameters_per_token": model.num_params(active=True),
        "config": model.config.model_dump(),
    }
    print(json.dumps(info, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1kit", description="Build, train and serve small reasoning language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("config", help="validate a model configuration and print it in full")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("init", help="write a randomly initialised model checkpoint")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("info", help="describe a checkpoint: parameter counts and configuration")
    p.add_argument("checkpoint", help="checkpoint directory")
    p.set_defaults(func=cmd_info)

    # (further sub-commands register here)
    return parser


def main(argv: list[str] | None = None) -> int:
    from r1kit.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"r1kit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
