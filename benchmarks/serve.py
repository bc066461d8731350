"""`r1kit serve` under load against the engine offline on the same requests.

    python benchmarks/serve.py [--models demo dense-25m] [--streams 1,8,32,64] [--requests-per-stream 2] [--quick]

For each model (random weights, a BPE trained on synthetic questions, saved as a checkpoint):
`r1kit serve` runs in its own process; this process is the client, with `--streams` concurrent
streaming clients (httpx), each sending `--requests-per-stream` chat requests back to back
(greedy, `--max-tokens` new tokens). Per request: time to first token, inter-token latency (time
from the first to the last token over the tokens between), output tokens (from usage). Served
throughput = all output tokens / wall time. Offline: the same requests through Engine.generate in
a separate process (max_batch_size = the stream count) while this client process stays up too,
with every core (the target's baseline) and with the server's default thread count (all cores but
one, which `r1kit serve` leaves to HTTP).
With --transformers, the dense model's weights are exported to Hugging Face's format and served by
`transformers serve` under the same load (1-32 streams), side by side.
Target (issue 22): at 32 streams, served >= 0.85x offline. Results: benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

MODELS = {
    "demo": dict(preset="demo"),
    "dense-25m": dict(preset="demo", dim=512, n_layers=8, n_heads=8, attention=dict(kind="dense"), moe=dict(n_experts=0)),
    "tiny": dict(preset="tiny", vocab_size=512, max_seq_len=384),
}
TARGET = 0.85


def questions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    frames = ["{name} has {a} apples and buys {b} more. How many apples does {name} have?",
              "A shelf holds {a} books. {name} adds {b} books and removes {c}. How many books are on the shelf?",
              "{name} reads {a} pages a day for {b} days. How many pages does {name} read?"]
    names = ["Tom", "Ana", "Lily", "Omar", "Mia", "Ravi"]
    return [rng.choice(frames).format(name=rng.choice(names), a=rng.randint(2, 99), b=rng.randint(2, 99), c=rng.randint(1, 9))
            for _ in range(n)]


def make_checkpoint(name: str, folder: Path) -> Path:
    import torch

    from r1kit.config import model_config_from
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.interop.checkpoint import save_pretrained
    from r1kit.model.transformer import Transformer

    corpus = questions(2000, seed=1) + [f"{a} + {b} = {a + b}\n</think>\n#### {a + b}" for a in range(40) for b in range(20)]
    cfg = model_config_from(MODELS[name])
    tok = Tokenizer.train(corpus, vocab_size=cfg.vocab_size)
    torch.manual_seed(0)
    model = Transformer(cfg.model_copy(update={"vocab_size": tok.vocab_size}))
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    path = folder / name
    save_pretrained(model, path, extra=tok.save)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_stream(client, url: str, model: str, prompts: list[str], max_tokens: int, records: list[dict]) -> None:
    for prompt in prompts:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        sent = time.perf_counter()
        times, tokens = [], 0
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}: {await response.aread()}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                if '"usage"' in line:  # the last chunk (choices []): only it is parsed, to keep the client light
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
                elif '"content"' in line or '"reasoning_content"' in line:
                    times.append(time.perf_counter())
        tokens = tokens or len(times)  # a server that sends no usage: one token a chunk
        ttft = times[0] - sent if times else float("nan")
        itl = (times[-1] - times[0]) / (tokens - 1) if tokens > 1 and len(times) > 1 else float("nan")
        records.append({"ttft": ttft, "itl": itl, "tokens": tokens})


async def load(url: str, model: str, streams: int, per_stream: int, max_tokens: int) -> dict:
    import httpx

    prompts = questions(streams * per_stream, seed=streams)
    records: list[dict] = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=streams + 4)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_stream(client, url, model, prompts[s::streams], max_tokens, records) for s in range(streams)))
        seconds = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in records)
    ttft = sorted(r["ttft"] for r in records)
    itl = sorted(r["itl"] for r in records if r["itl"] == r["itl"])
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    return {"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds, "requests": len(records),
            "ttft_p50": statistics.median(ttft), "ttft_p99": pct(ttft, 0.99),
            "itl_p50": statistics.median(itl) if itl else float("nan"), "itl_p99": pct(itl, 0.99)}


def offline(checkpoint: Path, streams: int, per_stream: int, max_tokens: int, threads: int | None = None) -> dict:
    """Engine.generate on the same requests, in its own process (as the server is), with torch's
    default threads (every core) or `threads`."""
    code = f"""
import json, sys, time
import torch
if {threads!r} is not None:
    torch.set_num_threads({threads!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from serve import questions
from r1kit.inference.engine import Engine, SamplingParams
engine = Engine.from_checkpoint({str(checkpoint)!r}, device="cpu", max_batch_size={streams})
prompts = questions({streams * per_stream}, seed={streams})
engine.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up (kernel build, allocations)
t0 = time.perf_counter()
outs = engine.generate(prompts, SamplingParams(max_new_tokens={max_tokens}))
seconds = time.perf_counter() - t0
tokens = sum(len(o.samples[0].token_ids) for o in outs)
print(json.dumps({{"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_server(command: list[str], url: str, env: dict | None = None) -> subprocess.Popen:
    import httpx

    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"{command[0]} did not start: {' '.join(command)}")
        time.sleep(0.2)


def transformers_side_by_side(checkpoint: Path, levels: list[int], per_stream: int, max_tokens: int) -> dict:
    """The same dense weights exported to Hugging Face's format, served by `transformers serve`
    (needs transformers' CLI and accelerate), under the same load; or why it was not run."""
    import importlib.util
    import os
    import shutil

    cli = Path(sys.executable).with_name("transformers")
    if not cli.exists() or importlib.util.find_spec("accelerate") is None:
        return {"skipped": "transformers serve needs transformers' CLI and accelerate (pip install accelerate)"}
    hf = checkpoint.parent / (checkpoint.name + "-hf")
    subprocess.run([sys.executable, "-m", "r1kit.cli", "export-hf", str(checkpoint), str(hf)], check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    server = start_server([str(cli), "serve", str(hf), "--port", str(port)], url, env)
    try:
        asyncio.run(load(url, str(hf), 1, 1, 4))  # warm-up: the model loads on the first request
        figures = {}
        for streams in levels:
            figures[str(streams)] = asyncio.run(load(url, str(hf), streams, per_stream, max_tokens))
            print(f"transformers serve {checkpoint.name} {streams:3d} streams: {figures[str(streams)]['tokens_per_s']:7.0f} tok/s, "
                  f"TTFT p50 {figures[str(streams)]['ttft_p50'] * 1e3:.0f} ms", flush=True)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(hf, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "dense-25m"], choices=list(MODELS))
    parser.add_argument("--streams", default="1,8,32,64")
    parser.add_argument("--requests-per-stream", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--transformers", action="store_true",
                        help="also serve the dense models' exported weights with `transformers serve` (1-32 streams)")
    parser.add_argument("--quick", action="store_true", help="the tiny model at 1 and 4 streams: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = parser.parse_args()
    if args.quick:
        args.models, args.streams, args.max_tokens = ["tiny"], "1,4", 16
    levels = [int(s) for s in args.streams.split(",")]

    report: dict = {"models": {}, "target": {"streams": 32, "served_over_offline": TARGET}}
    import os

    server_threads = max(1, (os.cpu_count() or 2) - 1)  # r1kit serve's default --threads
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            checkpoint = make_checkpoint(name, Path(tmp))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server([sys.executable, "-m", "r1kit.cli", "serve", str(checkpoint), "--port", str(port),
                                   "--max-queue", "4096", "--device", "cpu"], url)
            try:
                asyncio.run(load(url, name, 2, 1, 4))  # warm-up
                figures = {}
                for streams in levels:
                    served = asyncio.run(load(url, name, streams, args.requests_per_stream, args.max_tokens))
                    alone = offline(checkpoint, streams, args.requests_per_stream, args.max_tokens)
                    same = offline(checkpoint, streams, args.requests_per_stream, args.max_tokens, server_threads)
                    served["offline_tokens_per_s"] = alone["tokens_per_s"]
                    served["served_over_offline"] = served["tokens_per_s"] / alone["tokens_per_s"]
                    served["offline_server_threads_tokens_per_s"] = same["tokens_per_s"]
                    served["served_over_offline_server_threads"] = served["tokens_per_s"] / same["tokens_per_s"]
                    figures[str(streams)] = served
                    print(f"{name} {streams:3d} streams: served {served['tokens_per_s']:7.0f} tok/s, offline "
                          f"{alone['tokens_per_s']:7.0f} ({served['served_over_offline']:.2f}x; with the server's "
                          f"{server_threads} thread(s) {same['tokens_per_s']:.0f}, "
                          f"{served['served_over_offline_server_threads']:.2f}x); TTFT p50 "
                          f"{served['ttft_p50'] * 1e3:.0f} ms p99 {served['ttft_p99'] * 1e3:.0f} ms; ITL p50 "
                          f"{served['itl_p50'] * 1e3:.1f} ms p99 {served['itl_p99'] * 1e3:.1f} ms", flush=True)
                report["models"][name] = figures
            finally:
                server.terminate()
                server.wait(timeout=30)
            if name.startswith("dense") and args.transformers:
                report.setdefault("transformers_serve", {})[name] = transformers_side_by_side(
                    checkpoint, [s for s in levels if s <= 32], args.requests_per_stream, args.max_tokens)
    report["settings"] = {"streams": levels, "requests_per_stream": args.requests_per_stream, "max_tokens": args.max_tokens}
    if not args.quick:
        print(f"wrote {write_results(args.out, report)}")


if __name__ == "__main__":
    main()
