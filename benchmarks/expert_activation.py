"""expert_activation (S1's knob, issue 24): resident bytes and greedy accuracy of a checkpoint when
each MoE layer keeps a share of its routed experts, the most used on calibration problems, beside
the article's claim ("expert_activation=0.7: -40% memory for -3% accuracy").

    python benchmarks/expert_activation.py CHECKPOINT --test TEST.jsonl --calibration TRAIN.jsonl \\
        [--fractions 1.0 0.75 0.7 0.5] [--n 500] [--results benchmarks/results/expert_activation.json]

Each fraction loads the checkpoint afresh, keeps round(F x n_experts) experts per layer (never
fewer than top_k; r1kit/inference/experts.py), ranked by their use on the first --calibration-n
problems of --calibration (training data: never the test set), and evaluates greedily as `r1kit
eval` does. Bytes are the model's parameters and buffers (what inference keeps resident), and the
routed experts' share of them. Accuracy differences are paired (the same problems), with a 95%
interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paired import paired
from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--test", required=True, help="held-out problems (JSONL)")
    parser.add_argument("--calibration", required=True, help="problems ranking the experts: training data, not the test set")
    parser.add_argument("--calibration-n", type=int, default=500)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.75, 0.7, 0.5])
    parser.add_argument("--n", type=int, default=500, help="test problems")
    parser.add_argument("--results", default="benchmarks/results/expert_activation.json")
    args = parser.parse_args()

    from r1kit.data.schema import load_examples
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.evaluate import evaluate
    from r1kit.inference.experts import activate_experts
    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.train.routing import example_sequences

    tok = Tokenizer.load(args.checkpoint)
    test = load_examples(args.test).examples[: args.n]
    runs, full_rows = {}, None
    for fraction in args.fractions:
        model = load_pretrained(args.checkpoint).eval()
        calibration = example_sequences(tok, load_examples(args.calibration).examples[: args.calibration_n], model.config.max_seq_len)
        report = activate_experts(model, fraction, calibration)
        expert_bytes = sum(p.numel() * p.element_size() for m in model.moe_layers()
                           for p in (m.gate_up_proj_E2FC, m.down_proj_ECF))
        result = evaluate(model, tok, test, batch_size=64, max_new_tokens=128)  # r1kit eval's settings
        summary = result.summary()
        runs[str(fraction)] = {"experts_kept": len(report.kept[0]) if report.kept else 0, "n_experts": report.n_experts,
                               "kept": report.kept, "bytes": report.bytes_after, "expert_bytes": expert_bytes,
                               "accuracy": summary["accuracy"], "n": summary["n"]}
        if fraction == 1.0:
            full_rows = result.rows
        elif full_rows is not None:
            change = paired(result.rows, full_rows)
            runs[str(fraction)]["accuracy_change_vs_1.0"] = {"mean": change["diff"], "ci95": change["ci95"]}
        full = runs.get("1.0")
        line = f"expert_activation {fraction:4.2f}: {runs[str(fraction)]['experts_kept']}/{report.n_experts} experts, " \
               f"{report.bytes_after / 2**20:6.2f} MiB, accuracy {summary['accuracy']:6.1%}"
        if full:
            line += f" (bytes {report.bytes_after / full['bytes'] - 1:+.1%}, accuracy {summary['accuracy'] - full['accuracy']:+.1%} points)"
        print(line, flush=True)
        del model
    write_results(args.results, {"checkpoint": str(Path(args.checkpoint)), "test": args.test, "calibration": args.calibration,
                                 "calibration_n": args.calibration_n, "parameter_bytes_note": "parameters and buffers", "fractions": runs})
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
