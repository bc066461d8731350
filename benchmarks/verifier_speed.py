"""The verifier's time on hostile completions: towers of powers, megabytes of digits, deep
parentheses, thousands of claims, equations or answer markers. Each is scored (best of --repeats)
against a GSM8K question; every one must score invalid, and the slowest sets the figure (target:
each under 50 ms on one core). tests/test_verify.py scores the same inputs with a bound that only
catches a blow-up.

    python benchmarks/verifier_speed.py [--repeats 5] [--out benchmarks/results/verifier_speed.json]
"""

from __future__ import annotations

import argparse
import time

from results_file import write_results

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")

ADVERSARIAL = {
    "tower": "9**9**9**9 = 5\n#### 9**9**9**9",
    "tower in an annotation": "<<9**9**9**9=5>>\n#### 5",
    "tower as an answer": "#### 9^{9^{9^{9}}}",
    "a million digits": "1" * 1_000_000 + " + 1 = 2",
    "a million-digit answer": "#### " + "9" * 1_000_000,
    "1 MB of text": "a" * 2**20,
    "60k digits inside the cap": "9" * 60_000 + " + 1 = 2\n#### 7",
    "power over the size limit": " * ".join(["2^64"] * 17) + " = 5",
    "deep parentheses": "(" * 60_000 + "1" + ")" * 4_000 + " = 1",
    "many runs": "a(" * 32_000 + "=1",
    "many claims": ("1+1=2 " * 20_000)[:65_000],
    "many boxes": "\\boxed{" * 9_000,
    "many answer phrases": "the answer is " * 4_600,
    "many markers": "#### " * 13_000,
    "unclosed think tags": "<think>" * 9_000,
    # the prose before claims is read within bounds (equations and prose arithmetic)
    "many equations": ("x" + "*(x+48)" * 17 + " = 48 so ") * 60 + "\n48/2 = 25\n#### 7",
    "many short equations": "x+48=48 so " * 250 + "\n48/2 = 25\n#### 7",
    "equations before every claim": "\n".join("x = 48/2 so " * 3 + f"{i}*2 = {2 * i + 1}" for i in range(60)),
    "prose arithmetic before every claim": "\n".join("48 plus 48 equals 96 and " * 40 + f"{i}*2 = {2 * i + 1}" for i in range(60)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/verifier_speed.json")
    args = parser.parse_args()

    from r1kit.reward import score

    rows = []
    for name, text in ADVERSARIAL.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = score(text, "72", QUESTION, optimal_steps=3)
            times.append(time.perf_counter() - start)
        invalid = result.accuracy == 0.0 and result.valid_steps == 0
        rows.append({"input": name, "chars": len(text), "best_ms": 1000 * min(times), "worst_ms": 1000 * max(times), "invalid": invalid})
        print(f"{name:40s} {len(text):>9,d} chars  best {1000 * min(times):6.1f} ms  worst {1000 * max(times):6.1f} ms"
              f"{'' if invalid else '  SCORED VALID'}")
    slowest = max(rows, key=lambda r: r["best_ms"])
    print(f"slowest: {slowest['input']}, {slowest['best_ms']:.1f} ms (best of {args.repeats})")
    print(f"wrote {write_results(args.out, {'repeats': args.repeats, 'rows': rows, 'slowest_best_ms': slowest['best_ms']})}")


if __name__ == "__main__":
    main()
