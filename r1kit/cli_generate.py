"""The commands that generate text from a checkpoint: `r1kit generate`, `chat` and `serve` (their
flags are in cli.py's parser, with the other commands')."""

from __future__ import annotations

import argparse
import json
import os
import sys

def _sampling_params(args: argparse.Namespace):
    from r1kit.inference.engine import SamplingParams

    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed, n=getattr(args, "n", 1), stop=tuple(args.stop or ()),
                          precision=args.precision)


def _engine(args: argparse.Namespace):
    """generate / chat / serve's engine: the checkpoint with the --dynamic-config block (--dtype,
    when not auto, overrides its precision_mode; --expert-activation its expert_activation)."""
    from r1kit.inference.dynamic import DynamicInference, load_dynamic_inference
    from r1kit.inference.engine import Engine

    block = load_dynamic_inference(args.dynamic_config)
    if args.expert_activation is not None:
        block = DynamicInference(**{**block.model_dump(), "expert_activation": args.expert_activation})
    engine = Engine.from_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype, dynamic_inference=block)
    if engine.experts.source != "all kept":
        print(engine.experts.describe(), file=sys.stderr)
    return engine


class _Painter:
    """Reasoning dimmed on a terminal; marked with a prefix when output is piped."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty, self.channel = self.stream.isatty(), None

    def write(self, text: str, channel: str) -> None:
        if channel != self.channel:
            if self.tty:
                self.stream.write("\x1b[2m" if channel == "reasoning" else "\x1b[0m")
            elif channel == "reasoning":
                self.stream.write("[reasoning] ")
            elif self.channel == "reasoning":
                self.stream.write("\n[answer] ")
            self.channel = channel
        self.stream.write(text)
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\x1b[0m")
        self.stream.write("\n")
        self.stream.flush()
        self.channel = None


def cmd_generate(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    engine = _engine(args)
    params = _sampling_params(args)
    if args.json or params.n > 1:
        out = engine.generate([args.prompt], params)[0]
        print(json.dumps(asdict(out), indent=2))
        return
    painter = _Painter()
    for delta in engine.stream(args.prompt, params):
        painter.write(delta.text, delta.channel)
    painter.end()


def cmd_serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    try:
        from r1kit.serve.server import make_server, read_api_key
    except ImportError as e:
        raise ValueError(f"r1kit serve needs FastAPI and uvicorn: pip install 'r1kit[serve]' ({e})") from None

    api_key = read_api_key(args.api_key, args.api_key_file)
    import torch

    # the engine's compute threads leave a core to the HTTP side: with every core in torch's pool, a
    # handler or a client on one core stalls each parallel op (measured: docs/benchmarks.md, serve)
    threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    engine = _engine(args)
    server, _loop = make_server(engine, host=args.host, port=args.port, api_key=api_key, max_queue=args.max_queue,
                                model_name=args.model_name or Path(args.checkpoint).resolve().name)
    where = f"http://{args.host}:{args.port}"
    print(f"r1kit serve: {where}/v1 (OpenAI API), {where}/ (chat page), {where}/metrics; Ctrl-C stops", file=sys.stderr)
    server.run()


def cmd_chat(args: argparse.Namespace) -> None:
    engine = _engine(args)
    params = _sampling_params(args)
    messages: list[dict] = []
    painter = _Painter()
    print("r1kit chat: type a question; /reset forgets the conversation, /exit or Ctrl-D leaves.")
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            messages = []
            print("(conversation forgotten)")
            continue
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        prompt = engine.tokenizer.encode_conversation(messages)  # what the user typed is text, never a control token
        if len(prompt) + 1 >= engine.max_seq_len:  # keep the newest turns that fit
            while len(messages) > 1 and len(engine.tokenizer.encode_conversation(messages)) + 1 >= engine.max_seq_len:
                messages = messages[2:]
            prompt = engine.tokenizer.encode_conversation(messages)
            print("(older turns dropped: the context is full)")
        answer = []
        try:
            for delta in engine.stream(prompt, params):
                painter.write(delta.text, delta.channel)
                if delta.channel == "answer":
                    answer.append(delta.text)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            messages.pop()
            continue
        painter.end()
        # as DeepSeek-R1's template does, history keeps the answers, not the reasoning
        messages.append({"role": "assistant", "content": "".join(answer).strip()})
