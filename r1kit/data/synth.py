"""Synthetic, verifiable maths word problems: 27 situation templates composed into 1-6 step chains.

Synthetic problems (`synth`, `synth_splits`; the templates are listed in docs/data.md)
    Every operand of every step is a number written in the question or an earlier step's result,
    so a verifier can check grounding literally. That includes the constants of conversions and
    percentages: the question states "An hour has 60 minutes." or "35 out of every 100 sheep",
    never a bare "percent". Such stated constants are the problem's `facts`; they are exempt from
    `max_operand` (an hour has 60 minutes whatever the difficulty). Results are positive whole
    numbers: divisions divide evenly, no intermediate goes below 1, and every result is at most
    max(max_operand, largest fact) ** 2.

    Why the numbers are drawn the way they are (learnability for a ~1M-parameter model): a
    multiplication pairs a quantity (up to max_operand) with a count (how many items, hours,
    weeks, people: up to max(10, isqrt(max_operand)), at most max_operand), as real word problems
    do, so a 2-step problem with operands below 100 multiplies a 2-digit number by a 1- or
    2-digit count, not two 2-digit numbers. Steps follow the order in which the question states
    its numbers wherever the arithmetic allows.

Train / test disjointness
    `question_hash` hashes the normalised question (lower case, runs of whitespace folded to one
    space, stripped). `synth` never returns two questions with the same hash and skips any hash
    given in `exclude`; `synth_splits` draws the test set first (from its own random stream, so it
    does not change with n_train) and excludes its hashes from the training set.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from r1kit.data.schema import MAX_STEPS, MIN_MAX_OPERAND, MIN_STEPS, Example, question_hash

# ------------------------------------------------------------------------ the synthetic generator


class _Reject(Exception):
    """The numbers drawn do not fit the template's constraints; draw again."""


@dataclass(frozen=True)
class _Person:
    name: str
    female: bool

    @property
    def she(self) -> str:
        return "she" if self.female else "he"

    @property
    def his(self) -> str:
        return "her" if self.female else "his"

    @property
    def him(self) -> str:
        return "her" if self.female else "him"

    @property
    def She(self) -> str:
        return self.she.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()


_FEMALE = ("Ana Maya Lena Priya Sofia Grace Amara Yuki Chloe Nadia "
           "Hannah Zara Mei Olivia Fatima Ingrid Rosa Aisha Emma Leila").split()
_MALE = ("Tom Leo Omar Ravi Jonas Diego Kenji Samuel Ethan Malik "
         "Arjun Felix Hugo Noah Tariq Mateo Kofi Ivan Liam Daniel").split()
_PEOPLE = [_Person(n, True) for n in _FEMALE] + [_Person(n, False) for n in _MALE]


class _Draft:
    """One problem being built: draws numbers within the knobs and records each step, rejecting
    (raising _Reject) any result that is not a whole number in [1, result_max]."""

    def __init__(self, rng: random.Random, max_operand: int):
        self.rng = rng
        self.max_operand = max_operand
        self.count_max = min(max_operand, max(10, math.isqrt(max_operand)))
        self.steps: list[str] = []
        self.facts: list[int] = []

    @property
    def result_max(self) -> int:
        return max([self.max_operand, *self.facts]) ** 2

    def num(self, lo: int = 2, hi: int | None = None) -> int:
        """A quantity in [lo, min(hi, max_operand)]."""
        hi = self.max_operand if hi is None else min(hi, self.max_operand)
        if hi < lo:
            raise _Reject
        return self.rng.randint(lo, hi)

    def count(self, lo: int = 2, hi: int | None = None) -> int:
        """A count (items, hours, people) in [lo, min(hi, count_max)]."""
        return self.num(lo, self.count_max if hi is None else min(hi, self.count_max))

    def divisor(self, value: int, lo: int = 2, hi: int | None = None) -> int:
        """A divisor of `value` in [lo, min(hi, value - 1)] (default hi: count_max), so the quotient is >= 2."""
        hi = min(self.count_max if hi is None else min(hi, self.max_operand), value - 1)
        options = [d for d in range(lo, hi + 1) if value % d == 0]
        if not options:
            raise _Reject
        return self.rng.choice(options)

    def fact(self, value: int) -> int:
        """A constant the question states (60 minutes in an hour): exempt from max_operand."""
        self.facts.append(value)
        return value

    def pick(self, options: Sequence[Any]) -> Any:
        return self.rng.choice(options)

    def sample(self, options: Sequence[Any], k: int) -> list[Any]:
        return self.rng.sample(list(options), k)

    def person(self) -> _Person:
        return self.rng.choice(_PEOPLE)

    def op(self, a: int, sym: str, b: int) -> int:
        """Record the step `a sym b = c` and return c."""
        if sym == "+":
            c = a + b
        elif sym == "-":
            c = a - b
        elif sym == "*":
            c = a * b
        elif sym == "/":
            if b == 0 or a % b:
                raise _Reject
            c = a // b
        else:
            raise ValueError(f"unknown operation {sym!r}")
        if not 1 <= c <= self.result_max or (sym in "*/" and b == 1) or (sym == "*" and a == 1):
            raise _Reject
        self.steps.append(f"{a} {sym} {b} = {c}")
        return c

    def total(self, values: Sequence[int]) -> int:
        """Sum `values` left to right, one step per addition."""
        acc = values[0]
        for v in values[1:]:
            acc = self.op(acc, "+", v)
        return acc


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _pairs_within(d: _Draft, n: int, budget: int) -> list[tuple[int, int]]:
    """n (count, quantity) pairs whose products sum to at most `budget` (each product >= 4)."""
    pairs, spent = [], 0
    for i in range(n):
        cap = budget - spent - 4 * (n - i - 1)
        q = d.count(2, cap // 2)
        p = d.num(2, cap // q)
        pairs.append((q, p))
        spent += q * p
    return pairs


# Each template builds one problem with exactly k steps and returns the question text; its steps
# are recorded on the draft. Numbers are drawn in the order the question states them wherever
# the arithmetic allows, so the steps read the question left to right.

_SHOP_ITEMS = [("pen", "pens"), ("notebook", "notebooks"), ("mug", "mugs"), ("ball", "balls"), ("candle", "candles"),
               ("shirt", "shirts"), ("cap", "caps"), ("toy car", "toy cars"), ("plant", "plants"), ("lamp", "lamps"),
               ("scarf", "scarves"), ("bowl", "bowls"), ("kite", "kites"), ("puzzle", "puzzles")]


def _shopping_change(d: _Draft, k: int) -> str:
    p = d.person()
    kinds, change = (k + 1) // 2, k % 2 == 0
    items = d.sample(_SHOP_ITEMS, kinds)
    # with change the note (a drawn number, so <= max_operand) must exceed the total
    pairs = _pairs_within(d, kinds, d.max_operand - 1 if change else d.result_max)
    total = d.total([d.op(q, "*", price) for q, price in pairs])
    bought = [f"{q} {many} at {price} dollars each" for (q, price), (_, many) in zip(pairs, items)]
    text = f"{p.name} buys {_and(bought)}."
    if change:
        note = d.num(total + 1)
        d.op(note, "-", total)
        return f"{text} {p.She} pays with {note} dollars. How many dollars does {p.she} get back in change?"
    return text + d.pick([f" How many dollars does {p.she} spend in total?",
                          f" How much does {p.she} pay altogether, in dollars?"])


def _unit_price(d: _Draft, k: int) -> str:
    one, many = d.pick(_SHOP_ITEMS)
    q = d.count(2, d.max_operand // 2)
    total = q * d.num(2, d.max_operand // q)
    text = f"{d.pick(['In a shop', 'At a market', 'At a stall'])}, {q} {many} cost {total} dollars."
    unit = d.op(total, "/", q)
    if k == 1:
        return f"{text} How many dollars does one {one} cost?"
    q2 = d.count(2)
    if q2 == q:
        raise _Reject
    cost = d.op(unit, "*", q2)
    if k == 2:
        return f"{text} How many dollars do {q2} {many} cost?"
    p = d.person()
    note = d.num(cost + 1)
    d.op(note, "-", cost)
    return f"{text} {p.name} buys {q2} {many} and pays with {note} dollars. How many dollars does {p.she} get back?"


_MACHINES = [("printer", "prints", "print", "pages"), ("machine", "fills", "fill", "bottles"),
             ("oven", "bakes", "bake", "loaves"), ("robot", "builds", "build", "toy cars"),
             ("loom", "weaves", "weave", "scarves"), ("press", "stamps", "stamp", "coins")]


def _machine_rate(d: _Draft, k: int) -> str:
    machine, does, do, things = d.pick(_MACHINES)
    a, h = d.num(), d.count()
    made = d.op(a, "*", h)
    if k == 1:
        return f"A {machine} {does} {a} {things} every hour. How many {things} does it {do} in {h} hours?"
    if k == 2:
        days = d.count()
        d.op(made, "*", days)
        return (f"A {machine} {does} {a} {things} every hour. It runs for {h} hours a day. "
                f"How many {things} does it {do} in {days} days?")
    a2, h2 = d.num(), d.count()
    total = d.op(made, "+", d.op(a2, "*", h2))
    text = (f"One {machine} {does} {a} {things} an hour for {h} hours, and a second {machine} {does} {a2} "
            f"{things} an hour for {h2} hours.")
    if k == 3:
        return f"{text} How many {things} do they {do} altogether?"
    faulty = d.num(2, total - 1)
    d.op(total, "-", faulty)
    return f"{text} {faulty} of the {things} are faulty. How many {things} are not faulty?"


_MOVES = [("cycles", "cycle"), ("drives", "drive"), ("walks", "walk"), ("runs", "run"), ("rides", "ride"),
          ("rows", "row")]


def _speed_distance(d: _Draft, k: int) -> str:
    p = d.person()
    goes, go = d.pick(_MOVES)
    if k <= 2:
        if k == 1 and d.rng.random() < 0.5:
            s, h = d.num(), d.count()
            d.op(s, "*", h)
            return f"{p.name} {goes} at {s} km an hour for {h} hours. How many km does {p.she} {go}?"
        h = d.count(2, d.max_operand // 2)
        dist = h * d.num(2, d.max_operand // h)
        speed = d.op(dist, "/", h)
        text = f"{p.name} {goes} {dist} km in {h} hours at a steady speed."
        if k == 1:
            return f"{text} How many km does {p.she} {go} in one hour?"
        h2 = d.count()
        if h2 == h:
            raise _Reject
        d.op(speed, "*", h2)
        return f"{text} At the same speed, how many km does {p.she} {go} in {h2} hours?"
    trip = d.num() if k == 4 else None
    (h1, s1), (h2, s2) = _pairs_within(d, 2, trip - 1 if trip else d.result_max)
    total = d.op(d.op(s1, "*", h1), "+", d.op(s2, "*", h2))
    legs = f"{p.name} {goes} at {s1} km an hour for {h1} hours, then at {s2} km an hour for {h2} hours."
    if k == 3:
        return f"{legs} How many km does {p.she} {go} in total?"
    d.op(trip, "-", total)
    return f"{p.name}'s trip is {trip} km long. {legs} How many km of the trip are left?"


_LOOSE_THINGS = ["sweets", "marbles", "stickers", "cards", "grapes", "cookies", "coins", "shells", "buttons"]
_SHARERS = ["friends", "children", "classmates", "cousins"]


def _share_equally(d: _Draft, k: int) -> str:
    p, things, sharers = d.person(), d.pick(_LOOSE_THINGS), d.pick(_SHARERS)
    question = f"How many {things} does each of them get?"
    if k == 1:
        f = d.count(2, d.max_operand // 2)
        have = f * d.num(2, d.max_operand // f)
        d.op(have, "/", f)
        return f"{p.name} has {have} {things} and shares them equally among {f} {sharers}. {question}"
    bags, each = d.count(), d.num()
    have = d.op(bags, "*", each)
    text = f"{p.name} has {bags} bags with {each} {things} in each bag"
    if k == 4:
        loose = d.num()
        have = d.op(have, "+", loose)
        text += f" and {loose} more {things} in {p.his} pocket"
    text += "."
    if k >= 3:
        kept = d.num(2, have - 2)
        have = d.op(have, "-", kept)
        text += f" {p.She} keeps {kept} {things} for {p.him}self and shares the rest equally among"
    else:
        text += f" {p.She} shares all the {things} equally among"
    f = d.divisor(have)
    d.op(have, "/", f)
    return f"{text} {f} {sharers}. {question}"


_RELATIVES = ["mother", "father", "aunt", "uncle"]


def _ages(d: _Draft, k: int) -> str:
    c = d.person()
    age = d.count(2, 12)
    head = f"{c.name} is {age} years old."
    if k == 1:
        kind = d.pick(["times", "older", "future"])
        rel = d.pick(_RELATIVES)
        if kind == "times":
            m = d.count(2, 8)
            d.op(age, "*", m)
            return f"{head} {c.His} {rel} is {m} times as old as {c.him}. How old is {c.his} {rel}?"
        if kind == "older":
            g = d.num(2, 40)
            d.op(age, "+", g)
            return f"{head} {c.His} {rel} is {g} years older than {c.him}. How old is {c.his} {rel}?"
        y = d.count()
        d.op(age, "+", y)
        return f"{head} How old will {c.she} be in {y} years?"
    m = d.count(2, 8)
    if k == 2:
        rel = d.pick(_RELATIVES)
        older = d.op(age, "*", m)
        y = d.count()
        if d.rng.random() < 0.5:
            d.op(older, "+", y)
            return f"{head} {c.His} {rel} is {m} times as old as {c.him}. How old will {c.his} {rel} be in {y} years?"
        d.op(older, "-", y)
        return f"{head} {c.His} {rel} is {m} times as old as {c.him}. How old was {c.his} {rel} {y} years ago?"
    father = d.op(age, "*", m)
    g = d.num(2, 40)
    grandfather = d.op(father, "+", g)
    text = (f"{head} {c.His} father is {m} times as old as {c.him}. "
            f"{c.His} grandfather is {g} years older than {c.his} father.")
    if k == 3:
        y = d.count()
        d.op(grandfather, "+", y)
        return f"{text} How old will {c.his} grandfather be in {y} years?"
    d.op(d.op(age, "+", father), "+", grandfather)
    return f"{text} What is the sum of the ages of {c.name}, {c.his} father and {c.his} grandfather?"


# (where the group is, what its members are, what some of them do, what the others do)
_GROUPS = [("A class has {n} pupils.", "pupils", "walk to school", "do not walk to school"),
           ("A box holds {n} chocolates.", "chocolates", "have nuts", "have no nuts"),
           ("A farm has {n} sheep.", "sheep", "are black", "are not black"),
           ("A shelf holds {n} books.", "books", "are novels", "are not novels"),
           ("A car park has {n} cars.", "cars", "are red", "are not red"),
           ("A garden has {n} flowers.", "flowers", "are roses", "are not roses"),
           ("A town has {n} houses.", "houses", "have a garden", "have no garden")]


def _fraction_of(d: _Draft, k: int) -> str:
    where, members, some, others = d.pick(_GROUPS)
    den = d.count(2 if k == 1 else 3, d.max_operand // 2)
    n = den * d.num(2, d.max_operand // den)
    top = 1 if k == 1 else d.num(2, den - 1)
    part = d.op(n, "/", den)
    if k >= 2:
        part = d.op(part, "*", top)
    text = f"{where.format(n=n)} {top}/{den} of them {some}."
    if k <= 2:
        return f"{text} How many {members} {some}?"
    d.op(n, "-", part)
    return f"{text} How many {members} {others}?"


def _percent_of(d: _Draft, k: int) -> str:
    where, members, some, others = d.pick(_GROUPS)
    hundred = d.fact(100)
    pct = 5 * d.num(1, min(19, d.max_operand // 5))
    step = hundred // math.gcd(pct, hundred)  # n must be a multiple of this for a whole result
    n = step * d.num(1, d.max_operand // step)
    part = d.op(d.op(n, "*", pct), "/", hundred)
    text = f"{where.format(n=n)} {pct} {d.pick(['out of', 'in'])} every {hundred} {members} {some}."
    if k == 2:
        return f"{text} How many {members} {some}?"
    d.op(n, "-", part)
    return f"{text} How many {members} {others}?"


# (larger unit, smaller unit, how many smaller in one larger, the stated fact, scenes for 1, 2 and 3 steps)
_TIME_UNITS = [
    ("hours", "minutes", 60, "An hour has 60 minutes.",
     ("A film lasts {a} hours.", "A train journey takes {a} hours and {b} minutes.",
      "{p.name} spends {a} hours and {b} minutes on homework on Monday and {c} minutes on Tuesday.")),
    ("weeks", "days", 7, "A week has 7 days.",
     ("{p.name} goes on holiday for {a} weeks.", "{p.name} stays at a camp for {a} weeks and {b} days.",
      "{p.name} stays at a camp for {a} weeks and {b} days, then {c} days at {p.his} aunt's house.")),
    ("days", "hours", 24, "A day has 24 hours.",
     ("A storm lasts {a} days.", "A boat trip lasts {a} days and {b} hours.",
      "A boat sails for {a} days and {b} hours, then waits in port for {c} hours.")),
    ("minutes", "seconds", 60, "A minute has 60 seconds.",
     ("A song lasts {a} minutes.", "{p.name} holds a plank for {a} minutes and {b} seconds.",
      "{p.name} runs a race in {a} minutes and {b} seconds and then rests for {c} seconds.")),
]


def _time_units(d: _Draft, k: int) -> str:
    big, small, per, fact_text, scenes = d.pick(_TIME_UNITS)
    p, factor = d.person(), d.fact(per)
    a = d.count()
    b = d.num(2, factor - 1) if k >= 2 else 0
    c = d.num() if k == 3 else 0
    value = d.op(a, "*", factor)
    if k >= 2:
        value = d.op(value, "+", b)
    if k == 3:
        d.op(value, "+", c)
    text = scenes[k - 1].format(a=a, b=b, c=c, p=p)
    return f"{text} {fact_text} How many {small} is that{' in total' if k > 1 else ''}?"


# (larger unit, smaller unit, factor, stated fact, the thing ({amount}), what is asked of it,
#  what is done with it ({c} the size of a part), what is asked then)
_MEASURES = [
    ("metres", "centimetres", 100, "A metre is 100 centimetres.", "A ribbon is {amount} long.",
     "How many centimetres long is the ribbon?", "{p.name} cuts it into pieces {c} centimetres long.",
     "How many pieces does {p.she} get?"),
    ("metres", "centimetres", 100, "A metre is 100 centimetres.", "A rope is {amount} long.",
     "How many centimetres long is the rope?", "{p.name} cuts it into pieces {c} centimetres long.",
     "How many pieces does {p.she} get?"),
    ("kilometres", "metres", 1000, "A kilometre is 1000 metres.", "A path is {amount} long.",
     "How many metres long is the path?", "{p.name} splits it into sections of {c} metres.",
     "How many sections are there?"),
    ("kilograms", "grams", 1000, "A kilogram is 1000 grams.", "A bag holds {amount} of flour.",
     "How many grams of flour does the bag hold?", "{p.name} fills jars with {c} grams of flour each.",
     "How many jars does {p.she} fill?"),
    ("litres", "millilitres", 1000, "A litre is 1000 millilitres.", "A jug holds {amount} of juice.",
     "How many millilitres of juice does the jug hold?", "{p.name} pours it into cups of {c} millilitres each.",
     "How many cups does {p.she} fill?"),
]


def _measures(d: _Draft, k: int) -> str:
    big, small, per, fact_text, thing, ask, action, ask_parts = d.pick(_MEASURES)
    p, factor = d.person(), d.fact(per)
    a = d.count()
    value = d.op(a, "*", factor)
    amount = f"{a} {big}"
    if k >= 2:
        b = d.num(2, factor - 1)
        value = d.op(value, "+", b)
        amount += f" and {b} {small}"
    text = f"{thing.format(amount=amount)} {fact_text}"
    if k <= 2:
        return f"{text} {ask}"
    c = d.divisor(value, 2, d.max_operand)
    d.op(value, "/", c)
    return f"{text} {action.format(p=p, c=c)} {ask_parts.format(p=p)}"


_DOZEN_THINGS = [("buys", "eggs"), ("bakes", "rolls"), ("picks", "roses"), ("bakes", "cookies"), ("makes", "donuts"),
                 ("bakes", "muffins")]


def _dozens(d: _Draft, k: int) -> str:
    (verb, things), p, twelve = d.pick(_DOZEN_THINGS), d.person(), d.fact(12)
    dozens = d.count()
    have = d.op(dozens, "*", twelve)
    made = f"{p.name} {verb} {dozens} dozen {things}"
    if k == 4:
        extra = d.num(2, 11)
        have = d.op(have, "+", extra)
        made += f" and {extra} more"
    text = f"{made}. There are {twelve} {things} in a dozen."
    if k == 1:
        return f"{text} How many {things} does {p.she} have?"
    sold = d.num(2, have - 2)
    have = d.op(have, "-", sold)
    text += f" {p.She} sells {sold} of them."
    if k == 2:
        return f"{text} How many {things} are left?"
    bag = d.divisor(have)
    d.op(have, "/", bag)
    return f"{text} {p.She} puts the rest into bags of {bag}. How many bags does {p.she} fill?"


_PURCHASES = ["bike", "tablet", "guitar", "tent", "camera", "pair of skates"]


def _weekly_savings(d: _Draft, k: int) -> str:
    p = d.person()
    if k == 4:
        s, s2, w = d.num(), d.num(), d.count()
        weekly = d.op(s, "+", s2)
        text = (f"{p.name} saves {s} dollars a week from a paper round and {s2} dollars a week from "
                f"pocket money, for {w} weeks.")
    else:
        s, w = d.num(), d.count()
        weekly, text = s, f"{p.name} saves {s} dollars every week for {w} weeks."
    saved = d.op(weekly, "*", w)
    if k == 1:
        return f"{text} How many dollars does {p.she} save?"
    had = d.num()
    saved = d.op(saved, "+", had)
    text += f" {p.She} already had {had} dollars."
    if k == 2:
        return f"{text} How many dollars does {p.she} have now?"
    cost = d.num(2, saved - 1)
    d.op(saved, "-", cost)
    return (f"{text} Then {p.she} buys a {d.pick(_PURCHASES)} for {cost} dollars. "
            f"How many dollars does {p.she} have left?")


_INGREDIENTS = [("cake", "cakes", "eggs"), ("pie", "pies", "apples"), ("pot of soup", "pots of soup", "carrots"),
                ("salad", "salads", "tomatoes"), ("loaf of bread", "loaves of bread", "cups of flour"),
                ("batch of pancakes", "batches of pancakes", "spoons of sugar")]


def _recipe(d: _Draft, k: int) -> str:
    p = d.person()
    dish, dishes, stuff = d.pick(_INGREDIENTS)
    if k == 1:
        need, n = d.num(), d.count()
        d.op(need, "*", n)
        return f"One {dish} needs {need} {stuff}. How many {stuff} are needed for {n} {dishes}?"
    serves = d.count(2, d.max_operand // 2)
    guests = serves * d.count(2, d.max_operand // serves)
    need = d.num()
    times = d.op(guests, "/", serves)
    total = d.op(need, "*", times)
    text = f"A recipe for {serves} people needs {need} {stuff}. {p.name} cooks for {guests} people."
    if k == 2:
        return f"{text} How many {stuff} does {p.she} need?"
    if k == 4:
        extra = d.num()
        total = d.op(total, "+", extra)
        text += f" {p.She} also needs {extra} {stuff} for a second dish."
    has = d.num(2, total - 1)
    d.op(total, "-", has)
    return f"{text} {p.She} already has {has} {stuff}. How many more {stuff} must {p.she} buy?"


# (who, what each does, what they do, what they make, per what, how long)
_CREWS = [("workers", "packs", "pack", "boxes", "an hour", "hours"),
          ("gardeners", "plants", "plant", "trees", "a day", "days"),
          ("pickers", "fills", "fill", "baskets", "an hour", "hours"),
          ("bakers", "decorates", "decorate", "cakes", "an hour", "hours"),
          ("painters", "paints", "paint", "chairs", "a day", "days")]


def _factory_workers(d: _Draft, k: int) -> str:
    crew, does, do, things, per, span = d.pick(_CREWS)
    n, each = d.count(), d.num()
    made = d.op(n, "*", each)
    text = f"There are {n} {crew}. Each of them {does} {each} {things} {per}."
    if k == 1:
        return f"{text} How many {things} do they {do} {per} altogether?"
    h = d.count()
    made = d.op(made, "*", h)
    text += f" They work for {h} {span}."
    if k == 2:
        return f"{text} How many {things} do they {do} in total?"
    bad = d.num(2, made - 2)
    made = d.op(made, "-", bad)
    text += f" {bad} of the {things} are damaged."
    if k == 3:
        return f"{text} How many {things} are not damaged?"
    van = d.divisor(made, 2, d.max_operand)
    d.op(made, "/", van)
    return f"{text} The good {things} go onto vans that carry {van} each. How many vans are needed?"


# (who, what, for whom)
_PACK_SCENES = [("pencils", "pupils"), ("balloons", "guests"), ("bottles of water", "players"), ("stickers", "children"),
                ("candles", "tables"), ("seed packets", "gardeners")]


def _packs(d: _Draft, k: int) -> str:
    p = d.person()
    things, whom = d.pick(_PACK_SCENES)
    if k == 1:
        size = d.count(2, d.max_operand // 2)
        need = size * d.num(2, d.max_operand // size)
        d.op(need, "/", size)
        return f"{p.name} needs {need} {things}. They come in packs of {size}. How many packs must {p.she} buy?"
    each, many = d.count(), d.num()
    need = d.op(each, "*", many)
    size = d.divisor(need, 2, d.max_operand)
    packs = d.op(need, "/", size)
    text = f"{p.name} needs {each} {things} for each of {many} {whom}. The {things} come in packs of {size}."
    if k == 2:
        return f"{text} How many packs must {p.she} buy?"
    price = d.count()
    cost = d.op(packs, "*", price)
    text += f" Each pack costs {price} dollars."
    if k == 3:
        return f"{text} How many dollars does {p.she} spend?"
    note = d.num(cost + 1)
    d.op(note, "-", cost)
    return f"{text} {p.She} pays with {note} dollars. How many dollars does {p.she} get back?"


def _area_paint(d: _Draft, k: int) -> str:
    if k in (1, 2):
        length, width = d.count(), d.count()
        area = d.op(length, "*", width)
        text = f"A room is {length} metres long and {width} metres wide."
        if k == 1:
            return f"{text} What is the area of its floor in square metres?"
        if d.rng.random() < 0.5:
            price = d.num()
            d.op(area, "*", price)
            return (f"{text} Carpet costs {price} dollars per square metre. "
                    f"How many dollars does carpet for the floor cost?")
        tin = d.divisor(area, 2, d.max_operand)
        d.op(area, "/", tin)
        return f"{text} A tin of floor paint covers {tin} square metres. How many tins are needed for the floor?"
    l1, w1, l2, w2 = (d.count() for _ in range(4))
    area = d.op(d.op(l1, "*", w1), "+", d.op(l2, "*", w2))
    text = f"A flat has two rooms. One is {l1} metres by {w1} metres and the other is {l2} metres by {w2} metres."
    if k == 3:
        return f"{text} What is the total floor area in square metres?"
    tin = d.divisor(area, 2, d.max_operand)
    tins = d.op(area, "/", tin)
    text += f" A tin of floor paint covers {tin} square metres."
    if k == 4:
        return f"{text} How many tins are needed for both floors?"
    price = d.count()
    d.op(tins, "*", price)
    return f"{text} Each tin costs {price} dollars. How many dollars does the paint cost?"


_SHAPES = {3: "a triangle", 4: "a square", 5: "a pentagon", 6: "a hexagon", 8: "an octagon"}


def _fence(d: _Draft, k: int) -> str:
    sides = d.pick([n for n in _SHAPES if n <= d.max_operand])
    side = d.num()
    around = d.op(sides, "*", side)
    text = (f"A garden is shaped like {_SHAPES[sides]} with {sides} equal sides, each {side} metres long. "
            f"A fence goes all the way around it.")
    if k == 1:
        return f"{text} How many metres long is the fence?"
    gap = d.divisor(around, 2, d.max_operand)
    posts = d.op(around, "/", gap)
    text += f" There is a post every {gap} metres along the fence."
    if k == 2:
        return f"{text} How many posts are there?"
    price = d.count()
    d.op(posts, "*", price)
    return f"{text} Each post costs {price} dollars. How many dollars do the posts cost?"


_TIMES_OF_DAY = ["By noon", "In the afternoon", "In the evening", "At night", "By midnight", "Before dawn"]


def _temperature(d: _Draft, k: int) -> str:
    temp = d.num()
    parts = [f"In the morning the temperature was {temp} degrees."]
    left, when = k, iter(_TIMES_OF_DAY)
    while left:
        if left >= 2 and d.rng.random() < 0.3:  # a rate over hours: two steps
            r, h = d.count(), d.count()
            change = d.op(r, "*", h)
            if change < temp and d.rng.random() < 0.5:
                temp = d.op(temp, "-", change)
                parts.append(f"{next(when)} it fell by {r} degrees every hour for {h} hours.")
            else:
                temp = d.op(temp, "+", change)
                parts.append(f"{next(when)} it rose by {r} degrees every hour for {h} hours.")
            left -= 2
            continue
        if temp > 3 and d.rng.random() < 0.5:
            b = d.num(2, temp - 1)
            temp = d.op(temp, "-", b)
            parts.append(f"{next(when)} it {d.pick(['fell', 'dropped'])} by {b} degrees.")
        else:
            b = d.num()
            temp = d.op(temp, "+", b)
            parts.append(f"{next(when)} it {d.pick(['rose', 'went up'])} by {b} degrees.")
        left -= 1
    return " ".join(parts) + " What was the temperature then, in degrees?"


_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]


def _bus_passengers(d: _Draft, k: int) -> str:
    vehicle = d.pick(["bus", "train", "tram", "ferry"])
    on = d.num()
    parts = [f"A {vehicle} leaves the station with {on} passengers."]
    left, stop = k, iter(_ORDINALS)
    while left:
        both = left >= 2 and d.rng.random() < 0.6
        at = f"At the {next(stop)} stop,"
        if on > 3 and (both or d.rng.random() < 0.5):
            off = d.num(2, on - 1)
            on = d.op(on, "-", off)
            if both:
                got = d.num()
                on = d.op(on, "+", got)
                parts.append(f"{at} {off} people get off and {got} get on.")
                left -= 2
                continue
            parts.append(f"{at} {off} people get off.")
        else:
            got = d.num()
            on = d.op(on, "+", got)
            parts.append(f"{at} {got} people get on.")
        left -= 1
    return " ".join(parts) + f" How many passengers are on the {vehicle} now?"


_COLLECTIONS = ["stickers", "stamps", "marbles", "trading cards", "shells", "badges"]


def _stickers(d: _Draft, k: int) -> str:
    p, things = d.person(), d.pick(_COLLECTIONS)
    friend = d.pick([q for q in _PEOPLE if q.name != p.name])
    have = d.num()
    parts = [f"{p.name} has {have} {things}."]
    left = k
    while left:
        if left >= 2 and d.rng.random() < 0.4:
            n, size = d.count(), d.count()
            have = d.op(have, "+", d.op(n, "*", size))
            parts.append(f"{p.She} buys {n} packs with {size} {things} in each.")
            left -= 2
            continue
        if have > 3 and d.rng.random() < 0.5:
            b = d.num(2, have - 1)
            have = d.op(have, "-", b)
            parts.append(d.pick([f"{p.She} gives {b} to {friend.name}.", f"{p.She} loses {b} of them."]))
        else:
            b = d.num()
            have = d.op(have, "+", b)
            parts.append(d.pick([f"{friend.name} gives {p.him} {b} more.", f"{p.She} finds {b} more."]))
        left -= 1
    return " ".join(parts) + f" How many {things} does {p.name} have now?"


_OUTINGS = ["a museum", "a zoo", "a theatre", "a science fair", "an aquarium"]


def _school_trip(d: _Draft, k: int) -> str:
    place = d.pick(_OUTINGS)
    pupils = d.num()
    if k == 1:
        price = d.count()
        d.op(pupils, "*", price)
        return f"{pupils} pupils go to {place}. A ticket costs {price} dollars. How many dollars do the tickets cost?"
    teachers, price = d.count(), d.count()
    cost = d.op(d.op(pupils, "+", teachers), "*", price)
    text = f"{pupils} pupils and {teachers} teachers go to {place}. Each ticket costs {price} dollars."
    if k == 2:
        return f"{text} How many dollars do the tickets cost?"
    bus = d.num()
    cost = d.op(cost, "+", bus)
    text += f" The bus costs {bus} dollars."
    if k == 3:
        return f"{text} How many dollars does the trip cost in total?"
    classes = d.divisor(cost)
    d.op(cost, "/", classes)
    return f"{text} The {classes} classes on the trip share the cost equally. How many dollars does each class pay?"


_SALE_ITEMS = [("jacket", "jackets"), ("lamp", "lamps"), ("pair of shoes", "pairs of shoes"), ("backpack", "backpacks"),
               ("clock", "clocks"), ("chair", "chairs")]


def _discount(d: _Draft, k: int) -> str:
    p = d.person()
    one, many = d.pick(_SALE_ITEMS)
    price = d.num(4)
    off = d.num(2, price - 2)
    sale = d.op(price, "-", off)
    text = f"A {one} costs {price} dollars. In a sale it is {off} dollars cheaper."
    if k == 1:
        return f"{text} What is the sale price in dollars?"
    n = d.count()
    pay = d.op(sale, "*", n)
    text += f" {p.name} buys {n} {many} in the sale"
    if k == 2:
        return f"{text}. How many dollars does {p.she} pay?"
    hat = d.num()
    pay = d.op(pay, "+", hat)
    text += f" and a hat for {hat} dollars."
    if k == 3:
        return f"{text} How many dollars does {p.she} pay in total?"
    voucher = d.num(2, pay - 1)
    d.op(pay, "-", voucher)
    return f"{text} {p.She} uses a voucher for {voucher} dollars off the total. How many dollars does {p.she} pay?"


def _reading(d: _Draft, k: int) -> str:
    p = d.person()
    if k == 1:
        per, days = d.num(), d.count()
        d.op(per, "*", days)
        return f"{p.name} reads {per} pages a day. How many pages does {p.she} read in {days} days?"
    book = d.num(10)
    days = d.count()
    per = d.num(2, (book - 1) // days)
    read = d.op(per, "*", days)
    text = f"A book has {book} pages. {p.name} reads {per} pages a day for {days} days"
    if k == 4:
        extra = d.num(2, book - read - 1)
        read = d.op(read, "+", extra)
        text += f" and then {extra} pages on Sunday"
    left = d.op(book, "-", read)
    text += "."
    if k == 2:
        return f"{text} How many pages are left?"
    pace = d.divisor(left, 2, d.max_operand)
    d.op(left, "/", pace)
    return f"{text} If {p.she} then reads {pace} pages a day, how many more days does {p.she} need to finish the book?"


_WEEKDAYS = ["Monday", "Tuesday", "Wednesday"]


def _wages(d: _Draft, k: int) -> str:
    p = d.person()
    if k == 1:
        rate, hours = d.num(), d.count()
        d.op(rate, "*", hours)
        return f"{p.name} earns {rate} dollars an hour. How many dollars does {p.she} earn in {hours} hours?"
    days = 3 if k == 4 else 2
    hours = [d.count() for _ in range(days)]
    worked = d.total(hours)
    rate = d.num()
    earned = d.op(worked, "*", rate)
    shifts = _and([f"{h} hours on {day}" for h, day in zip(hours, _WEEKDAYS)])
    text = f"{p.name} works {shifts}. {p.She} earns {rate} dollars an hour."
    if k == 2:
        return f"{text} How many dollars does {p.she} earn?"
    spent = d.num(2, earned - 1)
    d.op(earned, "-", spent)
    on = d.pick(["food", "books", "a present", "bus fares"])
    return f"{text} {p.She} spends {spent} dollars on {on}. How many dollars does {p.she} have left?"


_ANIMALS = [("chicken", "chickens", 2), ("cow", "cows", 4), ("spider", "spiders", 8), ("beetle", "beetles", 6)]
_VEHICLES = [("car", "cars", 4), ("bike", "bikes", 2), ("tricycle", "tricycles", 3), ("lorry", "lorries", 6)]


_HERDS = [("goats", "ducks", "lambs"), ("sheep", "pigs", "calves"), ("rabbits", "hens", "turkeys"),
          ("horses", "donkeys", "geese")]


def _animal_legs(d: _Draft, k: int) -> str:
    if k in (2, 4):  # feeding: how many animals, times food per animal (and days)
        kinds = d.pick(_HERDS)[: 2 if k == 2 else 3]
        counts = [d.num() for _ in kinds]
        animals = d.total(counts)
        food = d.count()
        eaten = d.op(animals, "*", food)
        herd = _and([f"{n} {a}" for n, a in zip(counts, kinds)])
        text = f"A farm has {herd}. Each animal eats {food} kg of food a day."
        if k == 2:
            return f"{text} How many kg of food do they eat in a day?"
        days = d.count()
        d.op(eaten, "*", days)
        return f"{text} How many kg of food do they eat in {days} days?"
    n_kinds = (k + 1) // 2
    place, part, pool = d.pick([("A farm has", "legs", _ANIMALS), ("A car park has", "wheels", _VEHICLES)])
    kinds = d.sample(pool, n_kinds)
    counts = [d.num() for _ in kinds]
    d.total([d.op(n, "*", per) for n, (_, _, per) in zip(counts, kinds)])
    text = f"{place} {_and([f'{n} {many}' for n, (_, many, _) in zip(counts, kinds)])}."
    each = _and([f"each {one} has {per} {part}" for one, _, per in kinds])
    return f"{text} {each[0].upper() + each[1:]}. How many {part} are there {'in total' if k > 1 else 'altogether'}?"


def _fuel(d: _Draft, k: int) -> str:
    p = d.person()
    if k <= 2:
        per = d.count(2, d.max_operand // 2)
        trip = per * d.num(2, d.max_operand // per)
        litres = d.op(trip, "/", per)
        text = f"{p.name}'s car goes {per} km on one litre of fuel. {p.She} drives {trip} km."
        if k == 1:
            return f"{text} How many litres of fuel does {p.she} use?"
        price = d.count()
        d.op(litres, "*", price)
        return f"{text} Fuel costs {price} dollars a litre. How many dollars does the fuel cost?"
    trip, times = d.num(), d.count()
    driven = d.op(trip, "*", times)
    per = d.divisor(driven, 2, d.max_operand)
    litres = d.op(driven, "/", per)
    price = d.count()
    d.op(litres, "*", price)
    return (f"{p.name} drives a {trip} km route {times} times. {p.His} car goes {per} km on one litre of fuel, "
            f"and fuel costs {price} dollars a litre. How many dollars does {p.she} spend on fuel?")


def _split_bill(d: _Draft, k: int) -> str:
    meal = d.pick(["dinner", "lunch", "a picnic", "breakfast"])
    if k == 1:
        n = d.count(2, d.max_operand // 2)
        bill = n * d.num(2, d.max_operand // n)
        d.op(bill, "/", n)
        return f"{n} friends share a bill of {bill} dollars for {meal} equally. How many dollars does each friend pay?"
    if k == 2:
        food, drinks = d.num(), d.num()
        bill = d.op(food, "+", drinks)
        order = f"The food costs {food} dollars and the drinks cost {drinks} dollars."
    else:
        pizzas, price, drinks = d.count(), d.num(), d.num()
        bill = d.op(d.op(pizzas, "*", price), "+", drinks)
        order = f"They order {pizzas} pizzas at {price} dollars each and drinks for {drinks} dollars."
    if k == 4:
        tip = d.num()
        bill = d.op(bill, "+", tip)
        order += f" They leave a tip of {tip} dollars."
    n = d.divisor(bill)
    d.op(bill, "/", n)
    return f"{n} friends have {meal}. {order} They split the bill equally. How many dollars does each friend pay?"


@dataclass(frozen=True)
class Template:
    """A situation and the step counts it can make."""

    name: str
    steps: tuple[int, ...]
    build: Callable[[_Draft, int], str]


TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template("shopping_change", (1, 2, 3, 4, 5, 6), _shopping_change),
    Template("unit_price", (1, 2, 3), _unit_price),
    Template("machine_rate", (1, 2, 3, 4), _machine_rate),
    Template("speed_distance", (1, 2, 3, 4), _speed_distance),
    Template("share_equally", (1, 2, 3, 4), _share_equally),
    Template("ages", (1, 2, 3, 4), _ages),
    Template("fraction_of", (1, 2, 3), _fraction_of),
    Template("percent_of", (2, 3), _percent_of),
    Template("time_units", (1, 2, 3), _time_units),
    Template("measures", (1, 2, 3), _measures),
    Template("dozens", (1, 2, 3, 4), _dozens),
    Template("weekly_savings", (1, 2, 3, 4), _weekly_savings),
    Template("recipe", (1, 2, 3, 4), _recipe),
    Template("factory_workers", (1, 2, 3, 4), _factory_workers),
    Template("packs", (1, 2, 3, 4), _packs),
    Template("area_paint", (1, 2, 3, 4, 5), _area_paint),
    Template("fence", (1, 2, 3), _fence),
    Template("temperature", (1, 2, 3, 4, 5, 6), _temperature),
    Template("bus_passengers", (1, 2, 3, 4, 5, 6), _bus_passengers),
    Template("stickers", (1, 2, 3, 4, 5, 6), _stickers),
    Template("school_trip", (1, 2, 3, 4), _school_trip),
    Template("discount", (1, 2, 3, 4), _discount),
    Template("reading", (1, 2, 3, 4), _reading),
    Template("wages", (1, 2, 3, 4), _wages),
    Template("animal_legs", (1, 2, 3, 4, 5), _animal_legs),
    Template("fuel", (1, 2, 3), _fuel),
    Template("split_bill", (1, 2, 3, 4), _split_bill),
]}

_TRIES_PER_PROBLEM = 50  # draws before a (template, steps) pair counts as having failed once
_FAILURES_BEFORE_DROP = 20  # failed problems in a row before a (template, steps) pair is given up


def steps_range(steps: int | Sequence[int] | range) -> tuple[int, ...]:
    """The allowed step counts: an int k -> (k,); a pair (lo, hi) -> lo..hi inclusive; a range -> its
    members. Each count must lie in 1..6."""
    if isinstance(steps, bool):
        raise ValueError(f"steps must be an int, a (min, max) pair or a range, got {steps!r}")
    if isinstance(steps, int):
        counts: tuple[int, ...] = (steps,)
    elif isinstance(steps, range):
        counts = tuple(steps)
    elif isinstance(steps, (tuple, list)) and len(steps) == 2 and all(isinstance(s, int) for s in steps):
        counts = tuple(range(steps[0], steps[1] + 1))
    else:
        raise ValueError(f"steps must be an int, a (min, max) pair or a range, got {steps!r}")
    if not counts or not all(MIN_STEPS <= k <= MAX_STEPS for k in counts):
        raise ValueError(f"steps must lie in {MIN_STEPS}..{MAX_STEPS}, got {steps!r}")
    return counts


def _attempt(template: Template, k: int, rng: random.Random, max_operand: int) -> Example | None:
    for _ in range(_TRIES_PER_PROBLEM):
        draft = _Draft(rng, max_operand)
        try:
            question = template.build(draft, k)
        except _Reject:
            continue
        if len(draft.steps) != k:  # a template bug, not bad luck
            raise AssertionError(f"template {template.name} made {len(draft.steps)} steps for k={k}")
        meta = {"source": "synth", "template": template.name, "n_steps": k, "max_operand": max_operand,
                "facts": sorted(set(draft.facts))}
        answer = draft.steps[-1].rsplit(" = ", 1)[1]
        return Example(question, draft.steps, answer, k, meta)
    return None


OPERATIONS = "+-*/"


def _check_op_weights(op_weights: dict[str, float] | None) -> dict[str, float] | None:
    """Weights per operation for `synth(op_weights=...)`: keys among + - * /, finite values > 0, a
    missing operation weighs 1. None stays None (no reweighting)."""
    if op_weights is None:
        return None
    if unknown := [op for op in op_weights if op not in OPERATIONS]:
        raise ValueError(f"op_weights: unknown operation(s) {unknown}; allowed: + - * / (add sub mul div in the CLI)")
    if bad := {op: w for op, w in op_weights.items() if not (math.isfinite(w) and w > 0)}:
        raise ValueError(f"op_weights must be finite and > 0, got {bad}")
    return {op: float(op_weights.get(op, 1.0)) for op in OPERATIONS}


def _mean_op_weight(example: Example, op_weights: dict[str, float]) -> float:
    return sum(op_weights[step.split()[1]] for step in example.steps) / len(example.steps)


def _synth(n: int, rng: random.Random, steps, max_operand: int, templates, exclude: Iterable[str],
           op_weights: dict[str, float] | None = None) -> list[Example]:
    op_weights = _check_op_weights(op_weights)
    top_weight = max(op_weights.values()) if op_weights else 1.0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    if isinstance(max_operand, bool) or not isinstance(max_operand, int) or max_operand < MIN_MAX_OPERAND:
        raise ValueError(f"max_operand must be a whole number >= {MIN_MAX_OPERAND}, got {max_operand!r}")
    counts = steps_range(steps)
    names = list(TEMPLATES) if templates is None else list(templates)
    unknown = [t for t in names if t not in TEMPLATES]
    if unknown or not names:
        raise ValueError(f"unknown template(s) {unknown or names}; known: {', '.join(TEMPLATES)}")
    usable = {k: [TEMPLATES[t] for t in names if k in TEMPLATES[t].steps] for k in counts}
    if missing := [k for k in counts if not usable[k]]:
        raise ValueError(f"no chosen template makes {missing}-step problems; templates: {', '.join(names)}")

    seen, out = set(exclude), []
    failures: dict[tuple[str, int], int] = {}
    duplicates_left = 100 + 20 * n  # repeated questions tolerated before the space counts as exhausted
    while len(out) < n:
        k = rng.choice(counts)
        if not usable[k]:
            raise ValueError(f"cannot make {k}-step problems with max_operand={max_operand} from the "
                             f"templates {', '.join(names)}: narrow `steps` or raise max_operand")
        template = rng.choice(usable[k])
        example = _attempt(template, k, rng, max_operand)
        if example is None:
            key = (template.name, k)
            failures[key] = failures.get(key, 0) + 1
            if failures[key] >= _FAILURES_BEFORE_DROP:
                usable[k] = [t for t in usable[k] if t is not template]
            continue
        failures[(template.name, k)] = 0
        # keep a problem with probability (mean weight of its steps' operations) / (largest weight);
        # the draw happens only with weights, so unweighted data stays exactly what it was
        if op_weights and rng.random() * top_weight > _mean_op_weight(example, op_weights):
            continue
        h = question_hash(example.question)
        if h in seen:
            duplicates_left -= 1
            if duplicates_left < 0:
                raise ValueError(f"only {len(out)} distinct problems found for n={n} (steps {counts}, "
                                 f"max_operand {max_operand}): ask for fewer or widen the knobs")
            continue
        seen.add(h)
        out.append(example)
    return out


def synth(n: int, seed: int | str, steps: int | Sequence[int] | range = (1, 6), max_operand: int = 100,
          templates: Sequence[str] | None = None, exclude: Iterable[str] = (),
          op_weights: dict[str, float] | None = None) -> list[Example]:
    """`n` distinct synthetic problems, the same for the same arguments.

    seed         seeds a private random.Random (never the global RNG)
    steps        step counts to draw from, uniformly: an int, a (min, max) pair (inclusive) or a
                 range; default (1, 6), every count the generator makes
    max_operand  every number drawn for the question is at most this (>= 10); default 100, the
                 operand size of the SFT target. Stated facts (60 minutes) are exempt
    templates    names from TEMPLATES to draw from; default None = all. For each step count a
                 template that can make it is chosen uniformly
    exclude      question hashes never to return (e.g. a test set's)
    op_weights   e.g. {"-": 3, "/": 3}: keep each drawn problem with probability proportional to
                 the mean weight of its steps' operations (missing ones weigh 1), so the slowest-
                 learnt operations are seen more often in training; default None = the templates'
                 own mix. A rejected problem is replaced by a fresh draw (step count included)

    A (template, steps) pair that keeps failing to fit the knobs (e.g. 6-step shopping with
    change when every number is at most 10) is dropped. ValueError for bad knobs, for a step count
    left with no template, and for knobs that allow fewer than n distinct questions."""
    return _synth(n, random.Random(seed), steps, max_operand, templates, exclude, op_weights)


def synth_splits(n_train: int, n_test: int, seed: int, steps: int | Sequence[int] | range = (1, 6),
                 max_operand: int = 100, templates: Sequence[str] | None = None,
                 exclude: Iterable[str] = (), op_weights: dict[str, float] | None = None,
                 ) -> tuple[list[Example], list[Example]]:
    """(train, test) sharing no question hash (and none in `exclude`). The test set comes from its
    own stream (seed f"{seed}:test"), so it does not change with n_train; the train set is
    synth(n_train, seed, ...) with every test question skipped. Knobs as `synth`; `op_weights`
    reweights the train set only, so the test set keeps the templates' own mix."""
    exclude = set(exclude)
    test = _synth(n_test, random.Random(f"{seed}:test"), steps, max_operand, templates, exclude)
    exclude |= {question_hash(e.question) for e in test}
    train = _synth(n_train, random.Random(seed), steps, max_operand, templates, exclude, op_weights)
    return train, test




def drills(n: int, seed: int | str, max_operand: int = 100, steps: int | tuple[int, int] = 1) -> list[Example]:
    """`n` arithmetic drills, for mixing into SFT data: one step ("Work out 47 + 38.") or, with
    `steps` above 1, a chain worked left to right ("From left to right, work out 47 + 38 * 3 - 12.",
    steps `47 + 38 = 85`, `85 * 3 = 255`, `255 - 12 = 243`).

    A word problem spends most of its tokens on words (2.5 claims in ~80 tokens, 44 of them the
    question's); a chain spends them on the arithmetic that small models learn slowest, one claim
    per ~10 tokens. The numbers mirror the word problems' steps: sums and differences of an earlier
    result (up to 10 * max_operand) and a stated number (up to max_operand); products of a quantity
    (up to max_operand) and a count (up to max(10, isqrt(max_operand))) or, in chains, another
    quantity; exact quotients by such a count (by any exact divisor up to max_operand in chains).
    `steps`: claims per drill, an int or an inclusive (min, max) range drawn uniformly."""
    if max_operand < MIN_MAX_OPERAND:
        raise ValueError(f"max_operand must be at least {MIN_MAX_OPERAND}, got {max_operand}")
    lo, hi = (steps, steps) if isinstance(steps, int) else steps
    if not 1 <= lo <= hi:
        raise ValueError(f"drill steps must be a count >= 1 or a range lo <= hi, got {steps}")
    rng = random.Random(f"{seed}:drills")
    count_max = max(10, math.isqrt(max_operand))
    out = []
    for _ in range(n):
        op = rng.choice(OPERATIONS)
        if op == "+":
            a, b = rng.randint(1, 10 * max_operand), rng.randint(1, max_operand)
            c = a + b
        elif op == "-":
            a = rng.randint(2, 10 * max_operand)
            b = rng.randint(1, min(a - 1, max_operand))
            c = a - b
        elif op == "*":
            a, b = rng.randint(2, max_operand), rng.randint(2, count_max)
            c = a * b
        else:
            b, c = rng.randint(2, count_max), rng.randint(1, max_operand)
            a = b * c
        claims, expression = [f"{a} {op} {b} = {c}"], f"{a} {op} {b}"
        # a fixed length draws nothing, so one-step drills keep the random stream they always had
        for _ in range(rng.randint(lo, hi) - 1 if hi > lo else lo - 1):
            op, b, c_next = _chain_claim(rng, c, max_operand, count_max)
            claims.append(f"{c} {op} {b} = {c_next}")
            expression += f" {op} {b}"
            c = c_next
        question = f"Work out {expression}." if len(claims) == 1 else f"From left to right, work out {expression}."
        out.append(Example(question=question, steps=claims, answer=str(c), optimal_steps=len(claims),
                           meta={"source": "drill", "template": "drill", "n_steps": len(claims), "max_operand": max_operand}))
    return out


def _chain_claim(rng: random.Random, a: int, max_operand: int, count_max: int) -> tuple[str, int, int]:
    """(op, b, a op b) continuing a chain from the result `a` (>= 1): results stay whole and
    positive, and no larger than the word problems' (a product of an earlier result and a count)."""
    divisors = [d for d in range(2, min(a - 1, max_operand) + 1) if a % d == 0]
    allowed = [op for op, ok in (("+", a <= 10 * max_operand), ("-", a >= 2), ("*", a <= 10 * max_operand),
                                 ("/", bool(divisors))) if ok] or ["+"]
    op = rng.choice(allowed)
    if op == "+":
        b = rng.randint(1, max_operand)
        return op, b, a + b
    if op == "-":
        b = rng.randint(1, min(a - 1, max_operand))
        return op, b, a - b
    if op == "*":
        b = rng.randint(2, max_operand if a <= max_operand and rng.random() < 0.5 else count_max)
        return op, b, a * b
    small = [d for d in divisors if d <= count_max]  # the word problems mostly divide by a count
    b = rng.choice(small if small and (rng.random() < 0.75 or len(small) == len(divisors)) else divisors)
    return op, b, a // b
