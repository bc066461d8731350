"""Word noise (r1kit.data.synth.word_noise): made-up words in training questions keep every number,
step and answer, stay grounded as the verifier reads them, never write a word of the held-out side,
and only touch the training file `r1kit data synth --word-noise` writes."""

import json
import random
import re

import pytest

from r1kit.cli import main
from r1kit.data.synth import synth
from r1kit.data.synth.grammar import FOLLOW_UP, GRAMMAR
from r1kit.data.synth.lexicon import NUMBER_WORDS, SITUATIONS, UNSEEN_PHRASES
from r1kit.data.synth.word_noise import TRAINING_WORDS, made_up_word, situation_nouns, with_word_noise
from r1kit.reward.steps import check_steps, extract_steps

NUMBER = re.compile(r"\d+|\b(?:" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z]+")


def _unseen_only_words() -> set[str]:
    """Words the unseen side's text uses and the training side's never does."""
    unseen = synth(400, 1, steps=(1, 4), templates=[GRAMMAR["unseen"]]) + synth(100, 1, steps=1, templates=[FOLLOW_UP["unseen"]])
    train = synth(3000, 1, steps=(1, 4), templates=[GRAMMAR["train"]]) + synth(300, 1, steps=1, templates=[FOLLOW_UP["train"]])
    words = lambda examples: {w.lower() for e in examples for w in WORD.findall(e.context)}  # noqa: E731
    return words(unseen) - words(train)


def test_noise_keeps_numbers_steps_and_grounding_and_writes_no_held_out_word():
    clean = synth(400, 3, steps=(1, 4), templates=[GRAMMAR["train"]]) + synth(100, 3, steps=1, templates=[FOLLOW_UP["train"]])
    noisy = with_word_noise(clean, 0.3, seed=0)
    changed = [(c, n) for c, n in zip(clean, noisy) if c.question != n.question]
    assert len(changed) > 0.9 * len(clean)  # at p = 0.3 nearly every question has a made-up word
    for c, n in zip(clean, noisy):
        assert NUMBER.findall(n.question) == NUMBER.findall(c.question)  # digits and number words, in order
        assert (n.steps, n.answer, n.optimal_steps, n.history) == (c.steps, c.answer, c.optimal_steps, c.history)
        assert len(WORD.findall(n.question)) == len(WORD.findall(c.question))  # word for word
        assert n.meta.get("noised", False) == (n.question != c.question)
        checks = check_steps(extract_steps("\n".join(n.steps)), n.context)
        assert all(ch.valid for ch in checks), (n.question, n.steps)
    replaced = sum(a != b for c, n in changed for a, b in zip(WORD.findall(c.question), WORD.findall(n.question)))
    total = sum(len(WORD.findall(c.question)) for c in clean)
    assert 0.2 < replaced / total < 0.35  # about p of the words (number words are never drawn)
    held_out = _unseen_only_words()
    assert "apiece" in held_out
    noise_words = {w for _, n in changed for w in WORD.findall(n.question)}
    assert not noise_words & held_out
    rng = random.Random(0)
    assert not {made_up_word(rng) for _ in range(20_000)} & held_out  # "vase" fits the pattern: never drawn


def test_noise_is_reproducible_and_zero_changes_nothing():
    clean = synth(50, 4, steps=(1, 3), templates=[GRAMMAR["train"]])
    assert [e.question for e in with_word_noise(clean, 0.2, 1)] == [e.question for e in with_word_noise(clean, 0.2, 1)]
    assert [e.question for e in with_word_noise(clean, 0.2, 1)] != [e.question for e in with_word_noise(clean, 0.2, 2)]
    assert with_word_noise(clean, 0.0, 1) == clean
    with pytest.raises(ValueError, match="probability"):
        with_word_noise(clean, 1.5, 1)


def test_insertion_puts_one_or_two_made_up_words_into_sentences_and_keeps_the_rest_in_order():
    clean = synth(300, 6, steps=(1, 4), templates=[GRAMMAR["train"]])
    inserted = with_word_noise(clean, 0.0, seed=3, insert=1.0)  # every sentence of two words or more
    held_out = _unseen_only_words()
    for c, n in zip(clean, inserted):
        assert (n.steps, n.answer) == (c.steps, c.answer) and NUMBER.findall(n.question) == NUMBER.findall(c.question)
        assert all(ch.valid for ch in check_steps(extract_steps("\n".join(n.steps)), n.context)), n.question
        before, after = re.split(r"(?<=[.?!]) ", c.question), re.split(r"(?<=[.?!]) ", n.question)
        assert len(before) == len(after)  # sentence for sentence
        for b, a in zip(before, after):
            b_words, a_words = b.split(" "), a.split(" ")
            assert 1 <= len(a_words) - len(b_words) <= 2, (b, a)
            it = iter(a_words)
            assert all(w in it for w in b_words), (b, a)  # the sentence's own words, in order
            extra = [w for w in a_words if w not in b_words]
            assert extra and not set(extra) & held_out and all(re.fullmatch(r"[a-z]+", w) for w in extra), (b, a)
    with pytest.raises(ValueError, match="insertion"):
        with_word_noise(clean, 0.0, 1, insert=-0.1)


def test_swap_writes_training_side_words_in_place_and_never_an_unseen_phrase():
    clean = synth(600, 7, steps=(1, 4), templates=[GRAMMAR["train"]])
    swapped = with_word_noise(clean, 0.0, seed=2, swap=0.3)
    held_out = _unseen_only_words()
    assert not set(TRAINING_WORDS) & held_out
    changed = 0
    for c, n in zip(clean, swapped):
        assert (n.steps, n.answer) == (c.steps, c.answer) and NUMBER.findall(n.question) == NUMBER.findall(c.question)
        before, after = WORD.findall(c.question), WORD.findall(n.question)
        assert len(before) == len(after)  # word for word
        new = [a for b, a in zip(before, after) if a != b]
        assert all(w in TRAINING_WORDS for w in new), n.question
        changed += len(new)
        assert not [p for p in UNSEEN_PHRASES if re.search(rf"\b{re.escape(p)}", n.question.lower())], n.question
    total = sum(len(WORD.findall(c.question)) for c in clean)
    assert 0.2 < changed / total < 0.35  # about the swap probability (a word drawn for itself now and then)
    with pytest.raises(ValueError, match="swap"):
        with_word_noise(clean, 0.95, 1, swap=0.1)


def test_cli_noises_the_training_file_only(tmp_path, capsys):
    def synth_to(out, *extra):
        main(["data", "synth", "--n", "60", "--seed", "0", "--steps", "1-3", "--grammar-share", "0.5",
              "--out", str(out / "train.jsonl"), "--test-n", "20", "--test-out", str(out / "test.jsonl"),
              "--unseen-n", "20", "--unseen-out", str(out / "unseen.jsonl"), *extra])

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    synth_to(tmp_path / "a")
    synth_to(tmp_path / "b", "--word-noise", "0.2", "--word-insert", "0.1", "--word-swap", "0.05", "--new-nouns", "0.5")
    read = lambda path: [json.loads(line) for line in path.read_text().splitlines()]  # noqa: E731
    for held_out in ("test.jsonl", "unseen.jsonl"):
        assert read(tmp_path / "a" / held_out) == read(tmp_path / "b" / held_out)
    clean, noisy = read(tmp_path / "a" / "train.jsonl"), read(tmp_path / "b" / "train.jsonl")
    assert [r["steps"] for r in clean] == [r["steps"] for r in noisy]
    assert sum(c["question"] != n["question"] for c, n in zip(clean, noisy)) > 40
    with pytest.raises(SystemExit):
        synth_to(tmp_path / "b", "--word-noise", "2")
    assert "probability" in capsys.readouterr().err


def _mentions(text: str, noun: str) -> bool:
    return re.search(rf"\b{re.escape(noun)}\b", text, re.IGNORECASE) is not None


def test_new_nouns_rename_each_situation_noun_the_same_way_everywhere_and_keep_the_rest():
    clean = (synth(300, 5, steps=(1, 4), templates=[GRAMMAR["train"]]) + synth(100, 5, steps=1, templates=[FOLLOW_UP["train"]])
             + synth(100, 5, steps=(1, 3)))  # the templates' problems: no situation, never renamed
    renamed = with_word_noise(clean, 0.0, seed=0, new_nouns=1.0)
    lexicon = {w for side in SITUATIONS.values() for s in side for n in (*s.items, *s.cont, *s.sharers) for w in WORD.findall(n)}
    n_renamed = 0
    for c, r in zip(clean, renamed):
        assert (r.steps, r.answer, r.optimal_steps) == (c.steps, c.answer, c.optimal_steps)
        assert NUMBER.findall(r.question) == NUMBER.findall(c.question)
        nouns = situation_nouns(c)
        if not nouns:
            assert r == c
            continue
        n_renamed += 1
        names = r.meta["new_nouns"]
        assert set(names) == set(nouns) and not {w for n in names.values() for w in WORD.findall(n)} & lexicon
        texts = [(c.question, r.question)] + [(a["content"], b["content"]) for a, b in zip(c.history, r.history)]
        for before, after in texts:
            for noun, name in names.items():
                assert not _mentions(after, noun)  # no original noun is left
                assert _mentions(before, noun) == _mentions(after, name)  # ... and its one name stands wherever it stood
        checks = check_steps(extract_steps("\n".join(r.steps)), r.context)
        assert all(ch.valid for ch in checks), (r.question, r.steps)
        cont, conts = next(s.cont for side in SITUATIONS.values() for s in side if s.name == c.meta["situation"])
        if cont in names and conts in names:
            assert names[conts] == names[cont] + "s"  # one stem for the container, as the unseen side writes "barrel", "barrels"
    assert n_renamed >= 350


def test_new_nouns_keep_noise_and_swap_off_the_situation_nouns_and_zero_changes_nothing():
    clean = synth(200, 6, steps=(1, 4), templates=[GRAMMAR["train"]])
    noisy = with_word_noise(clean, 1.0, seed=0, new_nouns=1e-9)  # every other word made up, (nearly) no problem renamed
    for c, n in zip(clean, noisy):
        kept = {w.lower() for noun in situation_nouns(c) for w in WORD.findall(noun)}
        before, after = WORD.findall(c.question), WORD.findall(n.question)
        assert len(before) == len(after)
        for a, b in zip(before, after):
            assert (a == b) == (a.lower() in kept or a.lower() in NUMBER_WORDS), (c.question, n.question)
    assert with_word_noise(clean, 0.2, 1, swap=0.2, new_nouns=0.0) == with_word_noise(clean, 0.2, 1, swap=0.2)
    with pytest.raises(ValueError, match="new nouns"):
        with_word_noise(clean, 0.2, 1, new_nouns=1.5)
