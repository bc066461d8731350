"""The phrasing grammar (r1kit.data.synth.grammar): every problem exact and grounded as the verifier
reads it (number words included), the two sides of the template-held-out split sharing no
situation, frame or generic verb, and the mixed splits disjoint and reproducible."""

import re

import pytest

from r1kit.data.schema import question_hash
from r1kit.data.synth import synth, synth_splits
from r1kit.data.synth.grammar import FACTORS, FOLLOW_UP, GRAMMAR, ONE_UNSEEN, splits_with_grammar
from r1kit.data.synth.lexicon import DISTRACTORS, FRAMES, GAIN, LOSE, NUMBER_WORDS, SITUATIONS, UNSEEN_PHRASES
from r1kit.reward.steps import check_steps, extract_steps


@pytest.mark.parametrize("split", ["train", "unseen"])
def test_every_grammar_problem_is_exact_grounded_and_asks_for_its_last_result(split):
    examples = synth(300, 1, steps=(1, 5), templates=[GRAMMAR[split]])
    assert {e.optimal_steps for e in examples} == {1, 2, 3, 4, 5}
    for e in examples:
        checks = check_steps(extract_steps("\n".join(e.steps)), e.question)
        assert all(c.valid for c in checks), (e.question, e.steps, checks)
        assert e.answer == e.steps[-1].rsplit(" = ", 1)[1]
        assert e.meta["frames"][-1].rstrip("0123456789") in {"ask", "ask_left", "share", "pack", "times"}  # asked last
        assert e.meta["split"] == split
        assert e.meta["situation"] in {s.name for s in SITUATIONS[split]}
        for quote in e.meta["reading"]:  # the statements a step reads: sentences of the question
            assert quote is None or all(part.rstrip(".") in e.question for part in quote.split(". ")), quote
        results = [s.rsplit(" = ", 1)[1] for s in e.steps[:-1]]
        used = " ".join(s.split(" = ")[0] for s in e.steps[1:])
        assert all(re.search(rf"\b{r}\b", used) for r in results), e.steps  # minimal: every result is used
    # the surface varies: distractors about a third of the time, numbers as words, every frame kind used
    share = sum(e.meta["distractor"] for e in examples) / len(examples)
    assert 0.25 < share < 0.42
    assert any(re.search(rf"\b({'|'.join(NUMBER_WORDS[2:])})\b", e.question) for e in examples)
    kinds = {f.rstrip("0123456789") for e in examples for f in e.meta["frames"]}
    assert kinds >= {"start", "groups", "rate", "gain", "gain_groups", "lose", "share", "pack", "times", "ask"}


def test_the_unseen_side_shares_no_situation_frame_or_generic_verb_with_training():
    train, unseen = SITUATIONS["train"], SITUATIONS["unseen"]

    def words(situations, field):
        return {w for s in situations for w in (getattr(s, field) if field != "cont" else s.cont)}

    for field in ("items", "cont", "gain", "lose", "sharers"):
        assert not words(train, field) & words(unseen, field), field
    assert not {s.name for s in train} & {s.name for s in unseen}
    for kind, sides in FRAMES.items():
        assert not set(sides["train"]) & set(sides["unseen"]), kind
    assert not set(DISTRACTORS["train"]) & set(DISTRACTORS["unseen"])
    training_verbs = words(train, "gain") | words(train, "lose") | set(GAIN["train"]) | set(LOSE["train"])
    assert not training_verbs & (set(GAIN["unseen"]) | set(LOSE["unseen"]))
    # and in generated text: no training noun in an unseen problem
    nouns = {n for s in train for n in s.items}
    for e in synth(300, 2, steps=(2, 3), templates=[GRAMMAR["unseen"]]):
        assert not any(re.search(rf"\b{n}\b", e.question) for n in nouns), e.question


def test_the_training_side_composes_many_frames_and_never_writes_an_unseen_frames_phrases():
    for kind in ("start", "groups", "gain", "lose", "gain_groups", "share", "ask"):
        assert len(FRAMES[kind]["train"]) >= 8, kind
    unseen_texts = [*DISTRACTORS["unseen"], *(f for sides in FRAMES.values() for f in sides["unseen"])]
    for phrase in UNSEEN_PHRASES:  # each phrase is the unseen side's: the list itself is checked
        assert any(phrase in f.lower() for f in unseen_texts), phrase
    examples = synth(2000, 5, steps=(1, 5), templates=[GRAMMAR["train"]]) + synth(300, 5, steps=1, templates=[FOLLOW_UP["train"]])
    text = " ".join(e.context.lower() for e in examples)
    assert not [p for p in UNSEEN_PHRASES if re.search(rf"\b{re.escape(p)}", text)]
    # a product of two written numbers takes them in the order the question writes them, whichever
    # number its frame writes first
    number = re.compile(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r")\b")
    checked = 0
    for e in examples[:2000]:
        written = [w if w.isdigit() else str(NUMBER_WORDS.index(w)) for w in number.findall(e.question)]
        results = {s.rsplit(" = ", 1)[1] for s in e.steps}
        for step in e.steps:
            a, op, b = step.split(" = ")[0].split()
            if op == "*" and not {a, b} & results and written.count(a) == written.count(b) == 1:
                assert written.index(a) < written.index(b), e.question
                checked += 1
    assert checked > 500
    assert any(re.match(r"There are \S+ \S+ in each of", e.question) for e in examples)  # {b} before {a} is drawn


@pytest.mark.parametrize("factor", FACTORS)
def test_a_one_factor_set_takes_that_factor_from_the_unseen_side_and_the_rest_from_training(factor, monkeypatch):
    # every frame, generic verb and distractor marked with its side, so the text shows where each came from
    for side in ("train", "unseen"):
        mark = "Zu" if side == "unseen" else "Zt"
        for kind in FRAMES:
            monkeypatch.setitem(FRAMES[kind], side, tuple(f"{mark}frame {f}" for f in FRAMES[kind][side]))
        monkeypatch.setitem(DISTRACTORS, side, tuple(f"{mark}distractor {f}" for f in DISTRACTORS[side]))
        monkeypatch.setitem(GAIN, side, (f"{mark}verb",))
        monkeypatch.setitem(LOSE, side, (f"{mark}verb",))
    examples = synth(200, 3, steps=(2, 3), templates=[ONE_UNSEEN[factor]])
    text = " ".join(e.question for e in examples)
    for part in ("frame", "verb", "distractor"):
        assert (f"Zu{part}" in text) == (factor == f"{part}s") == (f"Zt{part}" not in text), part
    for e in examples:
        assert e.meta["unseen_factor"] == factor and e.meta["split"] == "train"
        side = "unseen" if factor == "situations" else "train"
        assert e.meta["situation"] in {s.name for s in SITUATIONS[side]}
        assert all(c.valid for c in check_steps(extract_steps("\n".join(e.steps)), e.question)), e.question


def test_splits_with_grammar_mix_the_sides_reproducibly_and_share_no_question():
    sets = splits_with_grammar(400, 50, 60, 3, 0.5, 0.2, 30, steps=(1, 4), test_steps=(2, 3))
    train, test, unseen, follow_up = sets["train"], sets["test"], sets["unseen"], sets["follow_up"]
    assert (len(train), len(test), len(unseen), len(follow_up)) == (400, 50, 60, 30)
    assert sum(e.meta.get("split") == "train" for e in train) == 200  # half from the grammar
    assert sum(bool(e.history) for e in train) == 40  # a fifth of those: follow-ups
    assert {e.meta.get("split") for e in test} == {None} and {e.meta["split"] for e in unseen + follow_up} == {"unseen"}
    hashes = [{question_hash(e.context) for e in s} for s in sets.values()]
    assert sum(map(len, hashes)) == len(set().union(*hashes))
    again = splits_with_grammar(400, 50, 60, 3, 0.5, 0.2, 30, steps=(1, 4), test_steps=(2, 3))
    assert {k: [e.to_json() for e in v] for k, v in again.items()} == {k: [e.to_json() for e in v] for k, v in sets.items()}
    # share 0 is synth_splits exactly: data made before the grammar is unchanged
    plain = splits_with_grammar(100, 20, 0, 3, 0.0, steps=(1, 4), test_steps=(2, 3))
    assert [[e.to_json() for e in plain[k]] for k in ("train", "test")] == \
        [[e.to_json() for e in s] for s in synth_splits(100, 20, 3, steps=(1, 4), test_steps=(2, 3))]
    with pytest.raises(ValueError, match="grammar_share"):
        splits_with_grammar(10, 5, 5, 0, 1.5)


@pytest.mark.parametrize("split", ["train", "unseen"])
def test_a_follow_up_is_one_grounded_step_on_the_earlier_answer_in_the_chat_format(split):
    from r1kit.data.schema import Example
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.format import format_conversation
    from r1kit.train.sft import reasoning_text

    examples = synth(200, 4, steps=1, templates=[FOLLOW_UP[split]])
    for e in examples:
        (first, answer), earlier = e.history, int(e.history[1]["content"].removeprefix("#### "))
        assert first["role"] == "user" and answer == {"role": "assistant", "content": f"#### {earlier}"}
        assert e.steps[0].split()[0] == str(earlier) and len(e.steps) == 1  # it continues from the answer
        assert all(c.valid for c in check_steps(extract_steps(e.steps[0]), e.context))
        assert Example.from_json(e.to_json()).messages == e.messages
        assert reasoning_text(e).splitlines()[-1] == e.steps[0]
    # without the earlier turns the step is (nearly always) ungrounded: the answer it starts from is needed
    alone = sum(all(c.valid for c in check_steps(extract_steps(e.steps[0]), e.question)) for e in examples)
    assert alone <= len(examples) // 10
    tok = Tokenizer.train([e.context for e in examples], vocab_size=300)
    e = examples[0]
    assert tok.decode(tok.encode_example(e.question, reasoning_text(e), e.answer, e.history).ids).startswith(
        tok.decode(tok.encode(format_conversation(e.messages))))


def test_gsm8k_at_the_demo_scale_keeps_exact_whole_number_chains_grounded_in_the_question(tmp_path, capsys):
    from pathlib import Path

    from r1kit.cli import main
    from r1kit.data.gsm8k_scale import demo_scale
    from r1kit.data.schema import gsm8k_example, load_examples, write_jsonl

    def row(question, solution):
        return gsm8k_example({"question": question, "answer": solution})

    fits = row("Carly has 7 jars with 5 shells each and 14 loose shells. How many shells?",
               "7*5=<<7*5=35>>35\n35+14=<<35+14=49>>49\n#### 49")
    rows = [fits,
            row("Ana has 48 clips and sells half. How many are left?",  # 2 is never written in digits
                "<<48/2=24>>24 sold\n<<48-24=24>>24\n#### 24"),
            row("Tom earns $12 an hour for 50 minutes.", "<<12/60=0.2>>0.2\n<<0.2*50=10>>10\n#### 10"),  # not whole
            row("A shop has 300 pens and 20 more. Then 5 go.", "<<300+20=320>>320\n<<320-5=315>>315\n#### 315"),  # > 100
            row("Leo has 3 cats.", "<<3*4=12>>12\n#### 12")]  # one step
    kept = demo_scale(rows)
    assert [e.steps for e in kept] == [["7 * 5 = 35", "35 + 14 = 49"]] and kept[0].answer == "49"
    checks = check_steps(extract_steps("\n".join(kept[0].steps)), kept[0].question)
    assert all(c.valid for c in checks)

    source = tmp_path / "gsm8k.jsonl"
    write_jsonl(source, [{"question": r.question, "answer": r.meta["solution"]} for r in rows])
    assert main(["data", "gsm8k-scale", str(source), "--out", str(tmp_path / "small.jsonl")]) == 0
    assert "wrote 1 of 5 GSM8K problems" in capsys.readouterr().out
    assert [e.steps for e in load_examples(tmp_path / "small.jsonl").examples] == [kept[0].steps]

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
    if shared.is_file():  # the real file, where this checkout has it: the subset the docs report
        from r1kit.data.schema import load_gsm8k

        real = demo_scale(load_gsm8k(shared))
        assert 800 <= len(real) <= 900 and {e.optimal_steps for e in real} == {2, 3}


def test_the_breakdowns_variants_take_back_one_factor_and_keep_each_problems_steps():
    """benchmarks/unseen_breakdown.py pairs the held-out set against itself with its verbs swapped for
    training's or its distractor dropped: every unseen verb has a stand-in of the same sign that
    training writes, and the variant changes that factor only."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from unseen_breakdown import KNOWN_VERB, sign_steps, variant

    unseen_gain = set(GAIN["unseen"]) | {v for s in SITUATIONS["unseen"] for v in s.gain}
    unseen_lose = set(LOSE["unseen"]) | {v for s in SITUATIONS["unseen"] for v in s.lose}
    assert set(KNOWN_VERB) == unseen_gain | unseen_lose
    train_gain = set(GAIN["train"]) | {v for s in SITUATIONS["train"] for v in s.gain}
    train_lose = set(LOSE["train"]) | {v for s in SITUATIONS["train"] for v in s.lose}
    assert all(KNOWN_VERB[v] in (train_gain if v in unseen_gain else train_lose) for v in KNOWN_VERB)
    examples = [e.to_json() for e in synth(300, 3, steps=(1, 4), templates=[GRAMMAR["unseen"]])]
    for e in examples:
        known = variant(e, "known_verbs")
        assert (known["steps"], known["answer"]) == (e["steps"], e["answer"])
        assert not any(re.search(rf"\b{v}\b", known["question"]) for v in KNOWN_VERB)
        checks = check_steps(extract_steps("\n".join(e["steps"])), known["question"])
        assert all(c.valid for c in checks)  # every number still stated
        plain = variant(e, "no_distractor")
        dropped = len(e["question"]) - len(plain["question"])
        assert (dropped > 0) == e["meta"]["distractor"]
        if not e["meta"]["distractor"]:
            assert plain["question"] == e["question"]
        # the steps on a stated number: + or -, and not the sum after a product of groups (its operand the step before's result)
        results = [None] + [s.rsplit(" = ", 1)[1] for s in e["steps"]]
        stated = [s.split()[1] for s, before in zip(e["steps"], results) if s.split()[1] in "+-" and s.split()[2] != before]
        assert [s["sign"] for s in sign_steps(e)] == stated
        assert all(s["verb"] in KNOWN_VERB for s in sign_steps(e))  # every such step names its verb


def test_the_breakdown_parts_the_problems_whose_sign_only_a_verb_tells():
    """benchmarks/unseen_breakdown.py --paired splits the held-out set where a model without outside
    English must guess a sign ("By evening she donates 24.") from where the frame tells it; the two
    parts are the whole set, and their paired differences weigh up to the whole's."""
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from unseen_breakdown import VERB_ONLY_FRAMES, paired_by_readability, sign_by_verb_only, sign_steps

    examples = [e.to_json() for e in synth(400, 5, steps=(2, 3), templates=[GRAMMAR["unseen"]])]
    guess = [sign_by_verb_only(e) for e in examples]
    assert 0 < sum(guess) < len(examples)
    for e, g in zip(examples, guess):
        sentences = [s for step in e["meta"]["reading"] for s in re.split(r"(?<=[.?!])\s+", step or "")]
        assert g == any(s.startswith("By evening") for s in sentences)  # the frame with nothing but its verb
        # such a step takes a stated number away, with an unseen verb the breakdown names
        assert g == any(s["frame"] in VERB_ONLY_FRAMES and s["sign"] == "-" and s["verb"] for s in sign_steps(e))
    rng = random.Random(0)
    rows_x = [{"question": e["question"], "accuracy": float(rng.random() < 0.6)} for e in examples]
    rows_y = [{"question": e["question"], "accuracy": float(rng.random() < 0.5)} for e in examples]
    parts = paired_by_readability(examples, rows_x, rows_y)
    a, b, whole = parts["a sign only its verb tells"], parts["every sign told by the frame"], parts["all"]
    assert a["n"] + b["n"] == whole["n"] == len(examples) and a["n"] == sum(guess)
    assert abs((a["diff"] * a["n"] + b["diff"] * b["n"]) / whole["n"] - whole["diff"]) < 1e-12


def test_the_breakdown_pairs_by_prompt_length_in_thirds_that_make_the_whole():
    """benchmarks/unseen_breakdown.py --paired --tokenizer: the length thirds hold every problem once, and
    their paired differences weigh up to the whole set's."""
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from paired import paired
    from unseen_breakdown import length_thirds, paired_by_length

    rng = random.Random(0)
    lengths = [rng.randint(45, 130) for _ in range(600)]
    bounds = length_thirds(lengths)
    assert len(bounds) == 3 and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    counts = [sum(lo <= n < hi for n in lengths) for lo, hi in bounds]
    assert sum(counts) == len(lengths) and min(counts) > len(lengths) / 4  # thirds, as ties allow
    rows_x = [{"question": str(i), "accuracy": float(rng.random() < 0.7 - n / 400)} for i, n in enumerate(lengths)]
    rows_y = [{"question": str(i), "accuracy": float(rng.random() < 0.5)} for i in range(len(lengths))]
    parts = paired_by_length(lengths, rows_x, rows_y)
    whole = paired(rows_x, rows_y)
    assert [p["n"] for p in parts.values()] == counts
    assert abs(sum(p["diff"] * p["n"] for p in parts.values()) / whole["n"] - whole["diff"]) < 1e-12
    # a prefix of the rows (an evaluation of the first N problems) is split by the same bounds
    prefix = paired_by_length(lengths, rows_x[:300], rows_y[:300])
    assert sum(p["n"] for p in prefix.values()) == 300
