"""Word noise: made-up words in training questions, so that a word never seen is not a reason to
misread a problem (issue 23, part A).

A model trained on the grammar's training side alone misreads the template-held-out problems
mostly where a word is new: it copies a number wrongly, or writes a step too many, next to "apiece"
or "throws away". Replacing each word of a training question with a made-up one ("bavo", "wofizi")
with a small probability shows it, every step, problems whose unknown words it must read past. The
numbers (digits and number words) are never replaced, so every step stays grounded in the question
and the answer is unchanged; earlier turns of a dialogue are left as written. A made-up word is
never one of the lexicon's (either side of the split). Insertion (`insert`, off in the recipe)
puts one or two made-up words into a sentence instead: a phrase never seen among known words, as
"By evening" before a known clause. Swapping (`swap`, 0.2 in the recipe) replaces a word with one
the training side writes elsewhere instead ("more" where "each" stood): a known word in a role it
never had, as "day" in "The next day" or "with" in "starts the day with". Measured in
docs/benchmarks.md, "Made-up words in training questions", "Distractors, insertions and
English-like made-up words" and "Known words in new places".
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Iterable

from r1kit.data.schema import Example
from r1kit.data.synth.lexicon import DISTRACTORS, FRAMES, GAIN, LOSE, NUMBER_WORDS, SITUATIONS, UNSEEN_PHRASES

_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE = re.compile(r"(?<=[.?!]) ")  # between sentences
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"


def _written(sides: tuple[str, ...]) -> list[str]:
    """The texts the grammar writes on these sides: verbs, frames, distractors, situations' words."""
    texts = [t for side in sides for t in (*GAIN[side], *LOSE[side], *DISTRACTORS[side])]
    texts += [f for kind in FRAMES.values() for side in sides for f in kind[side]]
    for side in sides:
        for s in SITUATIONS[side]:  # their names ("car park") are labels, never written
            texts += [*s.items, *s.cont, *s.gain, *s.lose, *s.sharers]
    return texts


def _words(texts: list[str]) -> set[str]:
    return {w.lower() for t in texts for w in _WORD.findall(t)}


# made-up words avoid every word of either side, and the situations' names too
_TAKEN = frozenset(_words(_written(("train", "unseen")) + [s.name for side in SITUATIONS.values() for s in side])) | set(NUMBER_WORDS)
# what a swap draws from: training's own words, so that it writes no word training does not already have
TRAINING_WORDS = tuple(sorted(_words(_written(("train",))) - set(NUMBER_WORDS)))
_UNSEEN_PHRASE = re.compile("|".join(rf"\b{re.escape(p)}" for p in UNSEEN_PHRASES))


def made_up_word(rng: random.Random) -> str:
    """Two or three consonant-vowel syllables ("bavo", "wofizi"), never a word of the lexicon."""
    while True:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))
        if word not in _TAKEN:
            return word


def noisy_question(question: str, p: float, rng: random.Random, insert: float = 0.0, swap: float = 0.0) -> str:
    """`question` with each word that is not a number word replaced by a made-up one with
    probability p or by a training-side word with probability `swap`, and, with probability
    `insert` per sentence, one or two made-up words put between two of its words (a phrase never
    seen, where the words around it are known)."""
    def replace(m: re.Match) -> str:
        word = m.group()
        if word.lower() in NUMBER_WORDS:
            return word
        draw = rng.random()  # one draw a word: with swap at 0, the words p replaces are as before
        if draw < p:
            return made_up_word(rng)  # lower case, even where a sentence starts: a word never seen
        if draw < p + swap:
            return rng.choice(TRAINING_WORDS)
        return word
    if p or swap:
        noisy = _WORD.sub(replace, question)
        while swap and _UNSEEN_PHRASE.search(noisy.lower()):  # swapped words that happen to write "after that": draw again
            noisy = _WORD.sub(replace, question)
        question = noisy
    if not insert:
        return question
    sentences = _SENTENCE.split(question)
    for i, sentence in enumerate(sentences):
        words = sentence.split(" ")
        if len(words) > 1 and rng.random() < insert:
            at = rng.randint(0, len(words) - 1)  # before the last word at most: the full stop stays put
            words[at:at] = [made_up_word(rng) for _ in range(rng.randint(1, 2))]
            sentences[i] = " ".join(words)
    return " ".join(sentences)


def with_word_noise(examples: Iterable[Example], p: float, seed: int, insert: float = 0.0, swap: float = 0.0) -> list[Example]:
    """Training examples with made-up words in their questions: each word replaced by one with
    probability p, or by a training-side word with probability `swap`; one or two put into each
    sentence with probability `insert` (the same seed, the same words). meta["noised"] marks the
    questions that changed; steps, answers and history are kept."""
    for name, value in (("word noise", p), ("word insertion", insert), ("word swap", swap), ("word noise and swap", p + swap)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} {value} must be a probability in [0, 1]")
    rng = random.Random(seed)
    noisy = []
    for e in examples:
        question = noisy_question(e.question, p, rng, insert, swap)  # draws nothing where all three are 0
        noisy.append(e if question == e.question else dataclasses.replace(e, question=question, meta={**e.meta, "noised": True}))
    return noisy
