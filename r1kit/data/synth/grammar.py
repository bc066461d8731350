"""Word problems built by a grammar rather than fixed sentences, to teach reading (issue 23).

A problem is a chain over one quantity: a head (a stated number, or a product such as "4 boxes
with 12 pens in each"), then things gained and lost (a product and a sum for "3 more boxes of
8"), then an end (a question, or a last step: sharing, packing, "3 times as many"). Every piece
draws its sentence frame and verb from the lexicon (lexicon.py), so the same chain is written
many ways; a third of problems carry a sentence whose number no step uses; small numbers are
written as words a quarter of the time. Steps stay `a op b = c` in the order the question states
the numbers, as the templates' do (draft.py states the guarantees).

`GRAMMAR["train"]` and `GRAMMAR["unseen"]` are templates (core.synth draws from them) over the two
sides of the template-held-out split: the unseen side's situations, frames and generic verbs never
appear in training.
"""

from __future__ import annotations

import random
from functools import partial

from r1kit.data.schema import Example, question_hash
from r1kit.format import format_answer
from r1kit.data.synth.core import synth, synth_splits
from r1kit.data.synth.draft import PEOPLE, Draft, Reject
from r1kit.data.synth.lexicon import ADJECTIVES, DISTRACTORS, FRAMES, GAIN, LOSE, NUMBER_WORDS, SITUATIONS
from r1kit.data.synth.templates import Template

DISTRACTOR_SHARE = 1 / 3  # TinyGSM's share of problems with irrelevant context
WORDS_SHARE = 0.25  # numbers up to twelve written as words this often ("three boxes")
ADJECTIVE_SHARE = 0.15  # training-side sentences whose things carry a word that changes nothing ("shiny beads")
_HEADS = ("start", "groups", "rate")  # start: no step; groups, rate: one
_ENDS = ("ask", "share", "pack", "times")  # ask: no step; the others: one


# the held-out factors of the unseen side; a diagnostic set takes one from the unseen side and the
# rest from training's, to see which one the model cannot read (benchmarks/phrasing_factors.py)
FACTORS = ("situations", "frames", "verbs", "distractors")


class _Writer:
    """The sentences of one problem: who it is about, and how its numbers and frames are written.
    Each factor is drawn from `split`'s side, but `unseen_factor` from the unseen side."""

    def __init__(self, d: Draft, split: str, unseen_factor: str | None = None):
        if unseen_factor is not None and unseen_factor not in FACTORS:
            raise ValueError(f"unseen_factor must be one of {FACTORS}, got {unseen_factor!r}")
        self.d, self.split, self.unseen_factor = d, split, unseen_factor
        self.situation = d.pick(SITUATIONS[self.side("situations")])
        self.items = d.pick(self.situation.items)
        self.person = d.person()
        self.other = d.pick([p for p in PEOPLE if p.name != self.person.name])
        self.sentences: list[str] = []
        self.frames: list[str] = []
        self.named = False
        self.reading: list[str | None] = []  # per step, the sentences it reads its numbers from (None: none new)
        self._unread: list[str] = []  # statements said since the last step

    def side(self, factor: str) -> str:
        return "unseen" if factor == self.unseen_factor else self.split

    def number(self, n: int) -> str:
        if n < len(NUMBER_WORDS) and self.d.rng.random() < WORDS_SHARE:
            return NUMBER_WORDS[n]
        return str(n)

    def verb(self, kind: str) -> str:
        own = self.situation.gain if kind == "gain" else self.situation.lose
        generic = (GAIN if kind == "gain" else LOSE)[self.side("verbs")]
        return self.d.pick(own + generic)

    def say(self, kind: str, **numbers: int) -> str:
        """Write one sentence of `kind` with `numbers`; returns its frame."""
        frames = FRAMES[kind][self.side("frames")]
        frame = self.d.pick(frames)
        self.frames.append(f"{kind}{frames.index(frame)}")
        verb = self.verb("lose" if kind in ("lose", "follow_lose") else "gain")
        text = self.fill(frame, v=verb, **{k: self.number(v) for k, v in numbers.items()})
        self.sentences.append(text)
        # what the next step reads: the statements since the last step, without the question a
        # last-step frame ends with
        asks = kind in ("share", "pack", "times") or kind.startswith("follow")
        self._unread.append(text[: text.index(". ") + 1] if asks else text)
        return frame

    def product(self, kind: str, a: int, b: int) -> int:
        """Say a product frame ({a} of {b}) and step it, the operands in the order the frame writes them."""
        frame = self.say(kind, a=a, b=b)
        first, second = (a, b) if frame.index("{a}") < frame.index("{b}") else (b, a)
        return self.step(first, "*", second)

    def step(self, a: int, op: str, b: int) -> int:
        """Record `a op b` on the draft; it reads the statements said since the step before."""
        self.reading.append(" ".join(self._unread) or None)
        self._unread = []
        return self.d.op(a, op, b)

    def fill(self, frame: str, **fields: str) -> str:
        p = self.person
        # the name the first time and now and then after; a pronoun otherwise
        subject = p.name if not self.named or self.d.rng.random() < 0.3 else p.she
        if "{S}" in frame or "{s}" in frame or "{o}" in frame:
            self.named = True
        cont, conts = self.situation.cont
        items = self.items
        if self.side("frames") == "train" and self.d.rng.random() < ADJECTIVE_SHARE:
            items = f"{self.d.pick(ADJECTIVES)} {items}"
        text = frame.format(S=subject[0].upper() + subject[1:], s=subject, o=p.name if subject == p.name else p.him,
                            his=p.his, items=items, cont=cont, conts=conts,
                            sharers=self.d.pick(self.situation.sharers), other=self.other.name, **fields)
        return text[0].upper() + text[1:]

    def distract(self) -> None:
        """One sentence with a number no step uses, anywhere but first and last."""
        frame = self.d.pick(DISTRACTORS[self.side("distractors")])
        sentence = self.fill(frame, x=self.number(self.d.num(2, 99)))
        self.sentences.insert(self.d.rng.randint(1, len(self.sentences) - 1), sentence)


def build(d: Draft, k: int, split: str, unseen_factor: str | None = None) -> str:
    """A k-step problem on `split`'s side ("train" or "unseen"), but for `unseen_factor` (one of
    FACTORS) drawn from the unseen side; its steps are recorded on `d`."""
    w = _compose(d, k, split, unseen_factor=unseen_factor)
    d.meta = {"split": split, "situation": w.situation.name, "frames": w.frames,
              "distractor": len(w.sentences) > len(w.frames), "reading": w.reading}
    if unseen_factor:
        d.meta["unseen_factor"] = unseen_factor
    return " ".join(w.sentences)


def build_follow_up(d: Draft, k: int, split: str) -> str:
    """A dialogue's second question, one step on the first one's answer ("Then she gives away 10.
    How many now?"); the first turn (1-3 steps, asking how many the person has) goes in
    meta["history"] with its answer, as format_conversation shows it."""
    if k != 1:
        raise ValueError("a follow-up question takes one step")
    first = Draft(d.rng, d.max_operand)
    w = _compose(first, d.rng.randint(1, 3), split, "ask")
    value = int(first.steps[-1].rsplit(" = ", 1)[1])
    history = [{"role": "user", "content": " ".join(w.sentences)}, {"role": "assistant", "content": format_answer(value)}]
    w.d, w.sentences, w.reading, w.frames, w._unread = d, [], [], [], []
    kind, op = d.pick([("follow_gain", "+"), ("follow_lose", "-"), ("follow_share", "/")])
    n = d.num() if op == "+" else d.num(2, value - 1) if op == "-" else d.divisor(value)
    w.say(kind, n=n)
    w.step(value, op, n)
    d.meta = {"split": split, "situation": w.situation.name, "frames": w.frames, "reading": w.reading,
              "history": history}
    return w.sentences[0]


def _compose(d: Draft, k: int, split: str, end: str | None = None, unseen_factor: str | None = None) -> _Writer:
    """The sentences of a k-step chain ending with `end` (None: any), written and stepped on `d`."""
    w = _Writer(d, split, unseen_factor)
    head = d.pick(_HEADS)
    end = end or d.pick(_ENDS)
    middle = k - (head != "start") - (end != "ask")  # steps left for gains and losses
    if middle < 0:
        raise Reject  # _attempt draws again
    if head == "start":
        value = d.num(3)
        w.say("start", a=value)
    else:  # a product: a count of boxes or days, and a quantity in each
        value = w.product(head, d.count(), d.num())
    last = head
    while middle > 0:
        kind = d.pick(["gain", "lose", "gain_groups"] if middle >= 2 else ["gain", "lose"])
        if kind == "gain":
            n = d.num()
            w.say("gain", n=n)
            value = w.step(value, "+", n)
        elif kind == "lose":
            n = d.num(2, value - 1)
            w.say("lose", n=n)
            value = w.step(value, "-", n)
        else:
            value = w.step(value, "+", w.product("gain_groups", d.count(), d.num()))
        middle -= 2 if kind == "gain_groups" else 1
        last = kind
    if end == "ask":
        w.say("ask_left" if last == "lose" and d.rng.random() < 0.5 else "ask")
    elif end in ("share", "pack"):
        n = d.divisor(value)
        w.say(end, n=n)
        w.step(value, "/", n)
    else:
        n = d.count(2, 6)
        w.say("times", n=n)
        w.step(value, "*", n)
    if d.rng.random() < DISTRACTOR_SHARE:
        w.distract()
    return w


GRAMMAR = {split: Template(f"grammar_{split}", (1, 2, 3, 4, 5), partial(build, split=split)) for split in SITUATIONS}
FOLLOW_UP = {split: Template(f"follow_up_{split}", (1,), partial(build_follow_up, split=split)) for split in SITUATIONS}
# training's side with one factor from the unseen side: diagnostic sets, never training data
ONE_UNSEEN = {factor: Template(f"grammar_unseen_{factor}", (1, 2, 3, 4, 5), partial(build, split="train", unseen_factor=factor))
              for factor in FACTORS}


def splits_with_grammar(n_train: int, n_test: int, n_unseen: int, seed: int, grammar_share: float,
                        follow_up_share: float = 0.0, n_follow_up: int = 0, steps=(1, 6), test_steps=None,
                        max_operand: int = 100, templates=None, exclude=(), op_weights=None) -> dict[str, list[Example]]:
    """{"train", "test", "unseen", "follow_up"}: `synth_splits`' template problems (train, test), with
    `grammar_share` of the training set drawn from the grammar's training side instead, of which
    `follow_up_share` are dialogues' follow-up questions (shuffled in); `n_unseen` held-out problems
    (`test_steps`) and `n_follow_up` held-out follow-ups from its unseen side. No question (a
    dialogue: no conversation) is shared between the sets. grammar_share 0 gives exactly
    synth_splits' train and test."""
    for name, share in (("grammar_share", grammar_share), ("follow_up_share", follow_up_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {share!r}")
    n_grammar = round(n_train * grammar_share)
    n_dialogues = round(n_grammar * follow_up_share)
    test_steps = steps if test_steps is None else test_steps
    train, test = synth_splits(n_train - n_grammar, n_test, seed, steps=steps, max_operand=max_operand,
                               templates=templates, exclude=exclude, op_weights=op_weights, test_steps=test_steps)
    held_out = dict(max_operand=max_operand, exclude=exclude)
    unseen = synth(n_unseen, f"{seed}:unseen", test_steps, templates=[GRAMMAR["unseen"]], **held_out) if n_unseen else []
    follow_up = synth(n_follow_up, f"{seed}:follow_up", 1, templates=[FOLLOW_UP["unseen"]], **held_out) if n_follow_up else []
    if n_grammar:
        taken = set(exclude) | {question_hash(e.context) for e in (*train, *test, *unseen, *follow_up)}
        train += synth(n_grammar - n_dialogues, f"{seed}:grammar", steps=steps, max_operand=max_operand,
                       templates=[GRAMMAR["train"]], exclude=taken, op_weights=op_weights)
        if n_dialogues:
            train += synth(n_dialogues, f"{seed}:dialogues", 1, max_operand=max_operand, templates=[FOLLOW_UP["train"]],
                           exclude=taken)
        random.Random(seed).shuffle(train)
    return {"train": train, "test": test, "unseen": unseen, "follow_up": follow_up}
