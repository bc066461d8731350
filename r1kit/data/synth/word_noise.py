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

New nouns (`new_nouns`, off unless asked) give a grammar problem's own nouns (the things counted,
their container, the people they are shared among) one made-up word each, the same word wherever
the problem or its dialogue writes them, as an unseen situation writes "plums" in every sentence;
and where it is on, word noise and swap leave those nouns alone in every grammar problem. Without
it, noise replaces a counted noun in one sentence and not the next, so a number's noun says
less of whether it counts the problem's things. Measured in docs/benchmarks.md, "New nouns": no
gain beyond the runs' spread; off in the recipe.
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


def noisy_question(question: str, p: float, rng: random.Random, insert: float = 0.0, swap: float = 0.0,
                   keep: frozenset[str] = frozenset()) -> str:
    """`question` with each word that is not a number word (nor, lower-cased, in `keep`) replaced by
    a made-up one with probability p or by a training-side word with probability `swap`, and, with
    probability `insert` per sentence, one or two made-up words put between two of its words (a
    phrase never seen, where the words around it are known)."""
    def replace(m: re.Match) -> str:
        word = m.group()
        if word.lower() in NUMBER_WORDS or word.lower() in keep:
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


_SITUATION_BY_NAME = {s.name: s for side in SITUATIONS.values() for s in side}


def situation_nouns(e: Example) -> dict[str, str]:
    """A grammar problem's nouns that its question or dialogue writes (the things counted, the
    container in both numbers, the sharers), each with its kind's plural ending: {noun: ""
    (singular) or "s"}; {} for a problem the grammar did not write."""
    situation = _SITUATION_BY_NAME.get(e.meta.get("situation"))
    if situation is None:
        return {}
    text = " ".join([e.question, *(turn["content"] for turn in e.meta.get("history", ()))]).lower()
    nouns = {item: "s" for item in situation.items} | {situation.cont[0]: "", situation.cont[1]: "s"}
    nouns |= {sharer: "s" for sharer in situation.sharers}
    return {noun: ending for noun, ending in nouns.items() if re.search(rf"\b{re.escape(noun)}\b", text)}


def _rename(text: str, names: dict[str, str]) -> str:
    """`text` with each of `names`' nouns written as its new name (a capital kept), longest first."""
    pattern = re.compile("|".join(rf"\b{re.escape(n)}\b" for n in sorted(names, key=len, reverse=True)), re.IGNORECASE)
    def rename(m: re.Match) -> str:
        new = names[m.group().lower()]
        return new[0].upper() + new[1:] if m.group()[0].isupper() else new
    return pattern.sub(rename, text)


def with_new_nouns(e: Example, nouns: dict[str, str], rng: random.Random) -> Example:
    """`e` with each of `nouns` (`situation_nouns(e)`) given one made-up word wherever its question
    and dialogue write it: the container's plural is its singular's with an "s", as "kezo", "kezos"."""
    cont = _SITUATION_BY_NAME[e.meta["situation"]].cont
    stems: dict[str, str] = {}
    names: dict[str, str] = {}
    for noun, ending in nouns.items():
        base = cont[0] if noun in cont else noun  # the container's two numbers share a stem
        if base not in stems:
            stems[base] = made_up_word(rng)
            while stems[base] + "s" in _TAKEN:  # "cone" is made up, "cones" a lexicon word
                stems[base] = made_up_word(rng)
        names[noun] = stems[base] + ending
    meta = {**e.meta, "new_nouns": names}
    if "history" in meta:
        meta["history"] = [{**turn, "content": _rename(turn["content"], names)} for turn in meta["history"]]
    if "reading" in meta:  # the clean sentences an operands-first trace quotes
        meta["reading"] = [sentence and _rename(sentence, names) for sentence in meta["reading"]]  # None: a step read from no sentence
    return dataclasses.replace(e, question=_rename(e.question, names), meta=meta)


def with_word_noise(examples: Iterable[Example], p: float, seed: int, insert: float = 0.0, swap: float = 0.0,
                    new_nouns: float = 0.0) -> list[Example]:
    """Training examples with made-up words in their questions: each word replaced by one with
    probability p, or by a training-side word with probability `swap`; one or two put into each
    sentence with probability `insert` (the same seed, the same words). With `new_nouns`, that
    share of the grammar's problems has its situation's nouns renamed (`with_new_nouns`), and
    noise and swap spare every grammar problem's nouns. meta["noised"] marks the questions that
    changed; steps and answers are kept, and a dialogue's history changes only by the renaming."""
    for name, value in (("word noise", p), ("word insertion", insert), ("word swap", swap), ("word noise and swap", p + swap),
                        ("new nouns", new_nouns)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} {value} must be a probability in [0, 1]")
    rng = random.Random(seed)
    noun_rng = random.Random(f"{seed}:nouns")  # its own draws, so that noise's are those of the same seed without it
    noisy = []
    for e in examples:
        keep = frozenset()
        if new_nouns and (nouns := situation_nouns(e)):
            if noun_rng.random() < new_nouns:
                e = with_new_nouns(e, nouns, noun_rng)
                nouns = e.meta["new_nouns"].values()
            keep = frozenset(w.lower() for noun in nouns for w in _WORD.findall(noun))
        question = noisy_question(e.question, p, rng, insert, swap, keep)  # draws nothing where all three are 0
        noisy.append(e if question == e.question else dataclasses.replace(e, question=question, meta={**e.meta, "noised": True}))
    return noisy
