"""Generation throughput on CPU: r1kit's engine against `transformers` generate() on the same weights.

    python benchmarks/generate.py [--new-tokens 128] [--prompt-len 64] [--quick]

For each model (a dense Llama-shaped r1kit model, exported with `r1kit export-hf` so both
libraries run identical weights; and the MoE + multi-scale demo model, r1kit only), and for
batch 1, 8 and 32 of random prompts:
  prefill tokens/s  prompt tokens / time of a generate call asked for one new token;
  decode tokens/s   batch x (new_tokens - 1) / (time for new_tokens - time for one);
  peak memory       peak RSS during the calls (Linux VmHWM, reset before them) minus RSS before
                    them: the generation's own memory, weights excluded.
Greedy decoding, every sequence forced to generate exactly new_tokens (no EOS), fp32, torch's
default threads. Each measurement runs in a fresh subprocess so its peak memory is its own; the
best of `--repeats` timings is kept. The two libraries are measured alternately `--rounds` times
and the median of each is reported with its range: on a shared virtual machine the same
measurement was seen to vary by 2x between runs minutes apart. The speed-up is each round's
ratio (r1kit's decode against the transformers run beside it), reported as the median with the
range; a target counts as met by the worst round. Results: benchmarks/results/generate.json, and a
table.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from child import run_child
from results_file import write_results

MODELS = {
    # the Llama architecture at two sizes: exported to transformers for the side-by-side
    "dense-demo": dict(preset="demo", attention=dict(kind="dense"), moe=dict(n_experts=0)),
    "dense-25m": dict(preset="demo", dim=512, n_layers=8, n_heads=8, attention=dict(kind="dense"), moe=dict(n_experts=0)),
    # the demo model itself (MoE + multi-scale attention): r1kit only, no Llama equivalent
    "demo (moe+multiscale)": dict(preset="demo"),
}


CHILD_TIMEOUT_S = 1800  # one measurement's ceiling: a child that hangs is killed, one that dies is reported at once

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _build(spec: dict, seed: int = 0):
    import torch

    from r1kit.config import model_config_from
    from r1kit.model.transformer import Transformer

    torch.manual_seed(seed)
    model = Transformer(model_config_from(dict(spec))).eval()
    model.set_symbol_flags(torch.rand(model.config.vocab_size) < 0.3)
    return model


def _run(library: str, spec: dict, hf_dir: str | None, batch: int, prompt_len: int, new_tokens: int, repeats: int, queue) -> None:
    import torch

    torch.manual_seed(1)
    if library == "r1kit":
        from r1kit.inference.engine import Engine, SamplingParams

        model = _build(spec)
        vocab = model.config.vocab_size
        prompts = torch.randint(3, vocab, (batch, prompt_len)).tolist()

        def call(n: int) -> None:
            Engine(model, max_batch_size=batch).generate(prompts, SamplingParams(max_new_tokens=n))
    else:
        import transformers

        model = transformers.LlamaForCausalLM.from_pretrained(hf_dir).eval()
        vocab = model.config.vocab_size
        ids = torch.randint(3, vocab, (batch, prompt_len))
        mask = torch.ones_like(ids)

        def call(n: int) -> None:
            model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=0, eos_token_id=None)

    with torch.inference_mode():
        call(2)  # warm-up
        base = _rss_bytes()
        with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to now: building the model is not counted
            f.write("5")
        one = min(_timed(call, 1) for _ in range(repeats))
        full = min(_timed(call, new_tokens) for _ in range(repeats))
    peak = _peak_rss_bytes()
    queue.put({
        "prefill_tokens_per_s": batch * prompt_len / one,
        "decode_tokens_per_s": batch * (new_tokens - 1) / max(full - one, 1e-9),
        "peak_mem_mib": max(0, peak - base) / 2**20,
        "seconds_for_all_tokens": full,
    })


def _timed(call, n: int) -> float:
    t0 = time.perf_counter()
    call(n)
    return time.perf_counter() - t0


def measure(*args) -> dict:
    return run_child(_run, args, timeout_s=CHILD_TIMEOUT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the libraries this many times; medians reported")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="one small model, batch 1 and 8, 32 tokens: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.json"))
    args = parser.parse_args()
    import transformers

    from r1kit.interop.checkpoint import save_pretrained
    from r1kit.interop.hf import export_hf
    from r1kit.data.tokenizer import Tokenizer

    models = {name: MODELS[name] for name in args.models.split(",")}
    batches = [int(b) for b in args.batches.split(",")]
    if args.quick:
        models = {"dense-demo": MODELS["dense-demo"]}
        batches, args.new_tokens, args.repeats, args.rounds = [1, 8], 32, 1, 1

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tok = Tokenizer.train(["0 1 2 3 4 5 6 7 8 9 + - * / = apples"] * 10, vocab_size=64)
        for name, spec in models.items():
            model = _build(spec)
            hf_dir = None
            if model.config.attention.kind == "dense" and not model.config.moe.n_experts:
                ckpt = Path(tmp) / name / "ckpt"
                save_pretrained(model, ckpt, extra=tok.save)
                hf_dir = str(export_hf(ckpt, Path(tmp) / name / "hf"))
            params = model.num_params()
            for batch in batches:
                row = {"model": name, "params": params, "batch": batch}
                libraries = ("r1kit", "transformers") if hf_dir else ("r1kit",)
                runs = {library: [] for library in libraries}
                for _ in range(args.rounds):
                    for library in libraries:
                        runs[library].append(measure(library, spec, hf_dir, batch, args.prompt_len, args.new_tokens, args.repeats))
                for library, rs in runs.items():
                    r = {key: statistics.median(x[key] for x in rs) for key in rs[0]}
                    r["decode_tokens_per_s_range"] = [min(x["decode_tokens_per_s"] for x in rs), max(x["decode_tokens_per_s"] for x in rs)]
                    row[library] = r
                    print(f"{name:22s} {params / 1e6:5.1f}M  batch {batch:3d}  {library:12s} "
                          f"decode {r['decode_tokens_per_s']:8.0f} tok/s ({r['decode_tokens_per_s_range'][0]:.0f}-"
                          f"{r['decode_tokens_per_s_range'][1]:.0f})  prefill {r['prefill_tokens_per_s']:8.0f} tok/s  "
                          f"peak {r['peak_mem_mib']:6.1f} MiB", flush=True)
                if hf_dir:
                    ratios = [a["decode_tokens_per_s"] / b["decode_tokens_per_s"] for a, b in zip(runs["r1kit"], runs["transformers"])]
                    row["decode_speedup_rounds"] = ratios
                    row["decode_speedup_vs_transformers"] = statistics.median(ratios)
                    print(f"{'':22s} r1kit / transformers decode: {statistics.median(ratios):.2f}x "
                          f"(rounds {min(ratios):.2f}-{max(ratios):.2f})", flush=True)
                results.append(row)

    settings = {"transformers": transformers.__version__, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                "repeats": args.repeats, "rounds": args.rounds}
    if not args.quick:
        print(f"wrote {write_results(args.out, {'settings': settings, 'results': results})}")


if __name__ == "__main__":
    main()
