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
    if args.explain:
        _explain_configs()
        return
    cfg = _model_config(args)
    print(json.dumps(cfg.model_dump(), indent=2))


def _explain_configs() -> None:
    """Every configuration key with its default and why, from the code: the reference."""
    import textwrap

    from r1kit.config import ModelConfig, explain
    from r1kit.train.grpo import RLConfig
    from r1kit.train.sft import SFTConfig

    for section, cls in (("model", ModelConfig), ("sft", SFTConfig), ("rl", RLConfig)):
        print(f"{section}:  ({cls.__name__}; in a config file under '{section}:', on the command line {section}.KEY=VALUE)")
        for key, default, why in explain(cls):
            print(f"  {key} = {default}")
            print(textwrap.fill(why, width=100, initial_indent="      ", subsequent_indent="      ") if why else "", end="\n" if why else "")
        print()


def cmd_init(args: argparse.Namespace) -> None:
    import torch

    from r1kit.interop.checkpoint import save_pretrained
    from r1kit.model.transformer import Transformer

    cfg = _model_config(args)
    torch.manual_seed(args.seed)
    model = Transformer(cfg)
    save_pretrained(model, args.out)
    print(f"wrote a randomly initialised model ({model.num_params():,} parameters) to {args.out}")


def cmd_info(args: argparse.Namespace) -> None:
    from r1kit.interop.checkpoint import load_pretrained

    model = load_pretrained(args.checkpoint)
    info = {
        "parameters": model.num_params(),
        "active_parameters_per_token": model.num_params(active=True),
        "config": model.config.model_dump(),
    }
    print(json.dumps(info, indent=2))


def cmd_reward(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r1kit.reward import RewardConfig, read_scoring_rows, score

    try:
        defaults = RewardConfig()
        weights = [defaults.accuracy_weight, defaults.step_validity_weight, defaults.efficiency_weight]
        if args.weights is not None:
            weights = [float(w) for w in args.weights.split(",")]
        if len(weights) != 3:
            raise ValueError(f"--weights takes three numbers (accuracy,step_validity,efficiency), got {args.weights!r}")
        config = RewardConfig(*weights, efficiency=args.efficiency or defaults.efficiency,
                              step_validity=args.step_validity or defaults.step_validity, last_number_fallback=not args.no_fallback,
                              think_in_prompt=args.think_in_prompt, question_coverage=args.question_coverage)
        if args.jsonl:
            if args.answer is not None or args.question is not None or args.optimal_steps is not None:
                raise ValueError("--answer, --question and --optimal-steps go with --completion; rows of --jsonl carry their own")
            for row in read_scoring_rows(args.jsonl):
                print(json.dumps(score(**row, config=config).to_dict()))
            return
        if args.answer is None:
            raise ValueError("--completion / --completion-file need --answer")
        if args.question_coverage and args.question is None:
            raise ValueError("--question-coverage needs --question: coverage is the share of the question's numbers used")
        # the text is the text, even when it happens to name a file; a file is read only when asked
        completion = args.completion if args.completion is not None else Path(args.completion_file).read_text(encoding="utf-8")
        result = score(completion, args.answer, args.question, args.optimal_steps, config)
        print(json.dumps(result.to_dict(), indent=2))
    except ValueError as e:  # bad input, including RowError (file:line: what is wrong)
        print(f"r1kit reward: error: {e}", file=sys.stderr)
        sys.exit(2)


def _at_least(low: int):
    """An argparse type: a whole number >= low (a count, a batch size, a token budget)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _fraction(text: str) -> float:
    """An argparse type: a share in (0, 1] (expert_activation)."""
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r1kit.data.schema import load_examples
    from r1kit.train.sft import training_corpus
    from r1kit.data.tokenizer import Tokenizer

    examples, _ = load_examples(args.data)
    tok = Tokenizer.train(training_corpus(examples), vocab_size=args.vocab_size)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tok.save(args.out)
    n_symbols = sum(tok.symbol_flags())
    print(f"trained a {tok.vocab_size}-token BPE ({n_symbols} maths-symbol tokens) on {len(examples)} examples -> {args.out}")


def cmd_train_sft(args: argparse.Namespace) -> None:
    from r1kit.train.sft import load_run_config, train_sft

    model_cfg, sft_cfg = load_run_config(args.config, args.overrides + _device_overrides(args, "sft"))
    final = train_sft(model_cfg, sft_cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"final checkpoint: {final}\nmetrics: {final.parent / 'metrics.jsonl'}")


def cmd_train_rl(args: argparse.Namespace) -> None:
    from r1kit.train.grpo import load_rl_config, train_rl

    cfg = load_rl_config(args.config, args.overrides + _device_overrides(args, "rl"))
    final = train_rl(cfg, args.init, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"final checkpoint: {final}\nmetrics: {final.parent / 'metrics.jsonl'}")


def _device_overrides(args: argparse.Namespace, section: str) -> list[str]:
    """--device / --dtype as the config's own keys (the flags win over a file's values)."""
    return [f"{section}.{k}={v}" for k, v in (("device", args.device), ("dtype", args.dtype)) if v is not None]


def cmd_demo(args: argparse.Namespace) -> None:
    from r1kit.recipes.demo import run_demo

    share = {} if args.sft_share is None else {"sft_share": args.sft_share}  # else the recipe's SFT_SHARE
    run_demo(args.out, minutes=args.minutes, quick=args.quick, seed=args.seed, progress=not args.no_progress,
             overwrite=args.overwrite, overrides=args.overrides, **share)


def cmd_claims(args: argparse.Namespace) -> None:
    from r1kit.recipes.claims import run_claims

    run_claims(args.out, minutes=args.minutes, doc=args.doc, n_test=args.n_test, seed=args.seed, progress=not args.no_progress)


def cmd_report(args: argparse.Namespace) -> None:
    from r1kit.recipes.report import write_report

    print(f"wrote {write_report(args.run_dir)}")


def cmd_eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r1kit.data.schema import load_examples, write_json, write_jsonl
    from r1kit.device import autocast
    from r1kit.evaluate import evaluate, print_table, sampled_accuracy
    from r1kit.inference.engine import load_for_inference

    model, tok, dtype = load_for_inference(args.checkpoint, args.device, args.dtype)
    device = next(model.parameters()).device
    experts = {}
    if args.expert_activation is not None or args.expert_calibration is not None:
        from r1kit.train.routing import activate_on_data

        experts = {"expert_activation": activate_on_data(model, tok, args.expert_activation, args.expert_calibration)}
    summaries, all_rows = {}, []
    for data in args.data:  # e.g. the in-template test set and the template-held-out one, side by side
        examples = load_examples(data).examples[: args.n]
        with autocast(device, dtype):
            result = evaluate(model, tok, examples, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        greedy = result.summary()
        summary = {**greedy, **experts}
        if args.samples:
            with autocast(device, dtype):
                sampled = sampled_accuracy(model, tok, examples, args.samples, temperature=args.temperature, seed=args.seed,
                                           batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
            for row, right in zip(result.rows, sampled.pop("right_per_problem")):
                row["sampled_right"] = right  # for --rows-out
            summary["sampled"] = sampled
            print_table(sampled, title=f"{args.samples} samples per problem at temperature {args.temperature}")
        print_table(greedy, title=f"{args.checkpoint} on {len(result.rows)} problems of {data}")
        summaries[data] = summary
        all_rows += [{**row, "data": data} for row in result.rows] if len(args.data) > 1 else result.rows
    if len(args.data) > 1:
        print("accuracy: " + " | ".join(f"{d} {s['accuracy']:.1%} (n={s['n']})" for d, s in summaries.items()))
    if args.out:
        only = args.data[0]
        record = {"data": only, **summaries[only]} if len(args.data) == 1 else {"sets": summaries}
        write_json(Path(args.out), {"checkpoint": str(args.checkpoint), **record})
        print(f"wrote {args.out}")
    if args.rows_out:  # on its own too: asked for, written
        write_jsonl(args.rows_out, all_rows)
        print(f"wrote {args.rows_out}")


def cmd_export_hf(args: argparse.Namespace) -> None:
    from r1kit.interop.hf import export_hf

    out = export_hf(args.checkpoint, args.out_dir)  # a non-dense model: ExportError, reported by main()
    print(f"wrote a Hugging Face Llama model to {out} (LlamaForCausalLM.from_pretrained({str(out)!r}))")


def build_parser() -> argparse.ArgumentParser:
    from r1kit.cli_generate import cmd_chat, cmd_generate, cmd_serve

    parser = argparse.ArgumentParser(prog="r1kit", description="Build, train and serve small reasoning language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("config", help="validate a model configuration and print it in full; --explain: every key's default and why")
    _add_config_args(p)
    p.add_argument("--explain", action="store_true", help="print the configuration reference (model, sft, rl keys) instead")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("init", help="write a randomly initialised model checkpoint")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("info", help="describe a checkpoint: parameter counts and configuration")
    p.add_argument("checkpoint", help="checkpoint directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("reward", help="score completions with the verifier's composite reward; JSON out")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--completion", help="a completion's text (always text, never read as a path)")
    source.add_argument("--completion-file", help="a file holding one completion's text")
    source.add_argument("--jsonl", help="a JSONL file of rows {completion, answer, question?, optimal_steps?}; "
                        "prints one breakdown per row, in order")
    p.add_argument("--answer", help="the gold answer (with --completion)")
    p.add_argument("--question", help="the question; without it, steps are not checked for grounding")
    p.add_argument("--optimal-steps", type=_at_least(1), help="the optimal step count; without it, no efficiency term")
    p.add_argument("--efficiency", choices=("article", "bounded"), default=None,
                   help="article: 1 - steps/optimal (S11, can go negative); bounded: min(1, optimal/steps)")
    p.add_argument("--weights", help="accuracy,step_validity,efficiency (default: RewardConfig's, S11's 0.6,0.3,0.1)")
    p.add_argument("--step-validity", choices=("article", "at_least_optimal"), default=None,
                   help="valid steps / steps written (article, the default) or / max(written, optimal) (GRPO's guard)")
    p.add_argument("--no-fallback", action="store_true",
                   help="no answer unless marked (####, \\boxed, 'the answer is', 'A:'); by default the last number counts")
    p.add_argument("--think-in-prompt", action="store_true",
                   help="the prompt ended with <think> (r1kit's chat template): no answer before </think>")
    p.add_argument("--question-coverage", action="store_true",
                   help="scale step validity by the share of the question's numbers that valid steps use (needs --question)")
    p.set_defaults(func=cmd_reward)

    from r1kit.cli_data import add_data

    add_data(sub, _at_least)

    p = sub.add_parser("tokenizer", help="train the byte-level BPE tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    q = tsub.add_parser("train", help="train a BPE (digits single, r1kit's special tokens) on a JSONL corpus")
    q.add_argument("--data", required=True, help="JSONL of problems (synthetic schema or GSM8K)")
    from r1kit.data.tokenizer import DEFAULT_VOCAB_SIZE  # no torch: building the parser stays light

    q.add_argument("--vocab-size", type=_at_least(64), default=DEFAULT_VOCAB_SIZE, help=f"BPE size (default {DEFAULT_VOCAB_SIZE}, SFT's)")
    q.add_argument("--out", required=True, help="directory for tokenizer.json and tokenizer_config.json")
    q.set_defaults(func=cmd_tokenizer_train)

    def add_device(p: argparse.ArgumentParser, default: str | None = None, training: bool = False) -> None:
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=default,
                       help="auto takes CUDA when torch sees a GPU (training: the config's value unless given)")
        p.add_argument("--dtype", choices=["auto", "fp32", "bf16", *(["bf16-matmul"] if training else [])], default=default,
                       help="compute precision (autocast" + ("; bf16-matmul: bf16 products only" if training else "")
                       + "); auto: r1kit.device.choose_dtype")

    def add_run_dir_flags(p: argparse.ArgumentParser) -> None:
        how = p.add_mutually_exclusive_group()
        how.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last exactly")
        how.add_argument("--overwrite", action="store_true",
                         help="start a new run in a non-empty OUT_DIR, replacing its checkpoints and metrics")
        p.add_argument("--no-progress", action="store_true", help="no progress bar (metrics still go to metrics.jsonl)")

    p = sub.add_parser("train", help="train a model: sft (stage one), rl (stage two, GRPO)")
    tsub = p.add_subparsers(dest="train_command", metavar="STAGE", required=True)
    q = tsub.add_parser("sft", help="supervised fine-tuning on reasoning traces")
    q.add_argument("--config", help="YAML/JSON file with model: and sft: sections")
    add_run_dir_flags(q)
    add_device(q, training=True)
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. sft.max_steps=200 model.dim=64")
    q.set_defaults(func=cmd_train_sft)
    q = tsub.add_parser("rl", help="GRPO from an SFT checkpoint with the verifier's composite reward")
    q.add_argument("--init", required=True, help="the SFT checkpoint to start from (and the KL reference when rl.beta > 0)")
    q.add_argument("--config", help="YAML/JSON file with an rl: section (configs/rl_demo.yaml)")
    add_run_dir_flags(q)
    add_device(q, training=True)
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. rl.max_steps=50 rl.beta=0.04")
    q.set_defaults(func=cmd_train_rl)

    p = sub.add_parser("eval", help="greedy evaluation of a checkpoint: accuracy, step validity, steps, expert use; pass@k with --samples")
    p.add_argument("checkpoint", help="checkpoint directory (with tokenizer.json)")
    p.add_argument("--data", required=True, nargs="+",
                   help="JSONL of held-out problems; several files are evaluated side by side (e.g. test.jsonl unseen.jsonl)")
    p.add_argument("--n", type=_at_least(1), default=500, help="first N problems of each file")
    p.add_argument("--batch-size", type=_at_least(1), default=64)
    p.add_argument("--max-new-tokens", type=_at_least(1), default=128)
    p.add_argument("--out", help="write the summary as JSON here")
    p.add_argument("--rows-out", help="also write every problem's completion and score as JSONL here")
    p.add_argument("--samples", type=_at_least(0), default=0,
                   help="also sample this many completions per problem and report pass@k (RL's headroom)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for --samples")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --samples")
    p.add_argument("--expert-activation", type=_fraction, metavar="F",
                   help="keep this share of each MoE layer's experts, the most used (r1kit/inference/experts.py)")
    p.add_argument("--expert-calibration", metavar="FILE", help="JSONL of problems ranking the experts (default: the checkpoint's loads)")
    add_device(p, default="auto")
    p.set_defaults(func=cmd_eval)

    from r1kit.cli_calibrate import add_calibrate
    from r1kit.cli_routing import add_update_routing

    add_update_routing(sub, _at_least, _positive_float)
    add_calibrate(sub, _at_least, _fraction)

    def add_expert_activation(p: argparse.ArgumentParser) -> None:
        p.add_argument("--expert-activation", type=_fraction, metavar="F", default=None,
                       help="keep this share of each MoE layer's experts, the most used by the checkpoint's loads "
                            "(the block's expert_activation; refresh the loads on your data with update-routing)")

    def add_sampling(p: argparse.ArgumentParser, max_new_tokens: int, temperature: float) -> None:
        p.add_argument("--max-new-tokens", type=_at_least(1), default=max_new_tokens)
        p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
        p.add_argument("--top-k", type=int, default=None)
        p.add_argument("--top-p", type=float, default=None)
        p.add_argument("--seed", type=int, default=None, help="same seed, same samples")
        p.add_argument("--stop", action="append", help="stop string (repeatable), matched in the text shown; "
                       "the text is cut before it; a special token's text (</think>: after the reasoning) stops at that token")
        p.add_argument("--precision", choices=["exact", "fp32", "bf16", "fp16"], default=None,
                       help="this request's compute precision (exact: fp32); default the engine's")
        p.add_argument("--dynamic-config", metavar="FILE", default=None,
                       help='JSON / YAML with the dynamic_inference block, e.g. {"dynamic_inference": '
                            '{"complexity_threshold": 0.7, "precision_mode": "auto", "memory_reuse": true}}')
        add_expert_activation(p)
        add_device(p, default="auto")

    p = sub.add_parser("generate", help="generate from a checkpoint; streams the reasoning (dimmed) and the answer")
    p.add_argument("checkpoint", help="checkpoint directory (with tokenizer.json)")
    p.add_argument("--prompt", required=True, help="the question; it is put in the chat format")
    p.add_argument("--n", type=_at_least(1), default=1, help="samples (sharing one prefill); n > 1 prints JSON")
    p.add_argument("--json", action="store_true", help="print ids, log-probabilities, text and finish reasons as JSON")
    add_sampling(p, max_new_tokens=256, temperature=0.0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="interactive multi-turn chat in the terminal, streamed")
    p.add_argument("checkpoint", help="checkpoint directory (with tokenizer.json)")
    add_sampling(p, max_new_tokens=256, temperature=0.0)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="serve a checkpoint: OpenAI-compatible API (reasoning_content), metrics, a chat page")
    p.add_argument("checkpoint", help="checkpoint directory (with tokenizer.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", help="clients must send Authorization: Bearer KEY on /v1 routes")
    key.add_argument("--api-key-file", help="read the API key from this file (keeps it out of the process list)")
    p.add_argument("--max-queue", type=_at_least(1), default=256, help="waiting requests before 429 (backpressure)")
    p.add_argument("--model-name", help="the model id clients name (default: the checkpoint directory's name)")
    p.add_argument("--dynamic-config", metavar="FILE", default=None, help="JSON / YAML with the dynamic_inference block")
    add_expert_activation(p)
    p.add_argument("--threads", type=_at_least(1), default=None,
                   help="torch compute threads for the engine (default: all cores but one, left to HTTP)")
    add_device(p, default="auto")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export-hf", help="export a dense checkpoint to the Hugging Face Llama format")
    p.add_argument("checkpoint", help="checkpoint directory (dense attention, no MoE)")
    p.add_argument("out_dir", help="directory to write (config.json, model.safetensors, tokenizer files)")
    p.set_defaults(func=cmd_export_hf)

    p = sub.add_parser("demo", help="the whole pipeline: data, tokenizer, SFT, eval, GRPO, eval, report (~20 min on 2 cores); "
                       "settings from configs/demo.yaml and configs/rl_demo.yaml, scaled to the budget")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--minutes", type=_positive_float, default=20.0, help="time budget; the trainings are sized to it")
    p.add_argument("--sft-share", type=float, default=None, help="SFT's share of the budget, in (0, 1); RL gets what is left "
                   "(default: the recipe's, r1kit.recipes.demo.SFT_SHARE)")
    p.add_argument("--quick", action="store_true", help="a one-minute run of the same pipeline on the tiny model")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out (else a non-empty --out is refused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="change the config files' settings for this run: model.dim=96 model.attention.kind=multiscale sft.lr=2e-3 "
                        "rl.group_size=4 (budgets, paths and seed come from --minutes, --out and --seed)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("claims", help="ablation runs behind the article's claims -> docs/claims.md (up to an hour; resumable)")
    p.add_argument("--out", default="runs/claims", help="run directory; finished runs in it are kept (resume)")
    p.add_argument("--minutes", type=_positive_float, default=60.0, help="time budget shared by the runs (evaluation on top)")
    p.add_argument("--doc", default="docs/claims.md", help="where the table goes (plots beside it in claims/)")
    p.add_argument("--n-test", type=_at_least(1), default=300, help="held-out problems per evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("report", help="rebuild RUN_DIR/report.md and its plots from the run's saved metrics")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    # (further sub-commands register here)
    return parser


def main(argv: list[str] | None = None) -> int:
    from r1kit.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, OSError, ValueError) as e:  # bad input and files (missing, a directory, no permission, ...)
        print(f"r1kit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
