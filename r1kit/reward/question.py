"""What a question states, as a grader reads it: the numbers it writes in digits and words, what
its unit words convert them to, and the numbers it states by counting (r1kit.reward.steps grounds
claims on them).

`question_numbers` (every number, in every form a step may use it), `stated_numbers` (the numbers
written in digits, each with its forms: question coverage), `unit_constants` (the factors unit
words imply: 60 with "minutes"; they may be used but never ground a claim on their own).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from r1kit.reward.arithmetic import _MIXED, _NUM, MAX_COMPLETION_CHARS, ExpressionError, _literal

# numbers a question states in words; see question_numbers
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate(_TENS_WORDS, 2)})
SCALE_WORDS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12}
_FRACTION_WORDS = {"half": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "sixth": 6,
                   "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10}
_MULTIPLIER_WORDS = {"twice": 2, "double": 2, "doubled": 2, "triple": 3, "tripled": 3, "thrice": 3,
                     "quadruple": 4, "quadrupled": 4, "pair": 2, "couple": 2}
_MONTH_DAYS = dict(zip("January February March April May June July August September October November December".split(),
                       (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)))
# a unit word brings its conversion factors, and converts the number just before it both ways
_UNIT_WORDS = {
    "percent": (100, Fraction(1, 100)), "cent": (100, Fraction(1, 100)), "penny": (100, Fraction(1, 100)),
    "nickel": (5, Fraction(1, 20)), "dime": (10, Fraction(1, 10)), "quarter": (25, Fraction(1, 4)),
    "second": (60, 3600), "minute": (60, 1440), "hour": (60, 24, 3600), "day": (24, 7, 1440), "week": (7, 52),
    "weekend": (2,), "fortnight": (14,), "month": (12, 30, 4), "year": (12, 52, 365), "decade": (10,),
    "century": (100,), "inch": (12,), "foot": (12, 3), "feet": (12, 3), "yard": (3, 36), "mile": (5280,),
    "pound": (16,), "ounce": (16,), "ton": (1000, 2000), "tonne": (1000,), "gallon": (4, 8, 16, 128),
    "quart": (2, 4, 32), "pint": (2, 8, 16), "cup": (8, 16), "liter": (1000,), "litre": (1000,),
    "milliliter": (1000,), "ml": (1000,), "gram": (1000,), "kilogram": (1000,), "kg": (1000,),
    "kilometer": (1000,), "km": (1000,), "meter": (100, 1000), "metre": (100, 1000), "centimeter": (100,),
    "cm": (100,), "kilowatt": (1000,), "kwh": (1000,),
    **{month.lower(): (days,) for month, days in _MONTH_DAYS.items() if month != "May"},  # "may" is a verb
}
# counts a word implies, which convert nothing: 5 weekdays a week, 4 legs of a dog, 4 quarters a year
_COUNT_WORDS = {"weekday": (5,), "leg": (4, 6, 8), "wheel": (3, 4), "quarterly": (3, 4)}
_UNIT_FACTORS = {word: frozenset(map(Fraction, factors)) for word, factors in _UNIT_WORDS.items()}
_IMPLIED = {word: frozenset(map(Fraction, factors)) for word, factors in (*_UNIT_WORDS.items(), *_COUNT_WORDS.items())}
# every form of a word the tables know (plurals too) -> its table key
_WORD_FORMS = {form: word for word in (*_NUMBER_WORDS, *SCALE_WORDS, *_FRACTION_WORDS, *_MULTIPLIER_WORDS,
                                       *_UNIT_WORDS, *_COUNT_WORDS, "and", "a", "an") for form in (word, word + "s")}
_WORD_FORMS.update({"pennies": "penny", "inches": "inch", "halves": "half", "centuries": "century"})
_QUESTION_TOKEN = re.compile(
    rf"(?P<num>{_MIXED}|{_NUM})(?:\s*/\s*(?P<den>\d+))?(?P<pct>\s*%)?|(?P<word>[A-Za-z]+)")
_HOURS_AND_MINUTES = re.compile(r"\b(\d+) hours? (?:and )?(\d+) minutes?\b", re.IGNORECASE)
_UNIT_AND_A_HALF = re.compile(r"\ban? ([A-Za-z]+) and (?:a )?half\b", re.IGNORECASE)


def _one_and_a_half(m: re.Match) -> str:
    """"an hour and a half", "a pound and half": 1 1/2 of the unit."""
    return f"1 1/2 {m.group(1)}" if _WORD_FORMS.get(m.group(1).lower()) in _UNIT_FACTORS else m.group()


def _percent(p: Fraction) -> set[Fraction]:
    """p% as a step may use it: p/100, and the factors of "p% more" and "p% off"."""
    return {p / 100, 1 + p / 100, 1 - p / 100}


def question_numbers(question: str) -> frozenset[Fraction]:
    """Every number the question states, as a step may use it:
    digits -- 20% also as 0.2, 1.2 and 0.8 (20% more, 20% off); 1/4 also as 1, 4 and 0.25;
    number words -- three, twenty-five, two hundred, a dozen, four and a half;
    fraction words -- half: 1/2 and 2; two-thirds: 2/3; half an hour: 30;
    multiplier words -- twice, double: 2; triple, thrice: 3; pair, couple: 2;
    unit words -- each brings its conversion factors (hour: 60 and 24, week: 7 and 52, cent: 100
    and 0.01, quarter: 25, 4 and 0.25, June: 30; see _UNIT_WORDS) and converts the number before it
    both ways (30 minutes: also 0.5 and 1800; 50 cents: also 0.5)."""
    written, converted = read_question(question)
    return written | converted


@lru_cache(maxsize=4096)  # RL scores a group of completions per question
def read_question(question: str) -> tuple[frozenset[Fraction], frozenset[Fraction]]:
    """(the numbers a question writes, in digits or words or by counting, the ones it gives by
    converting them with their unit words): see question_numbers."""
    numbers: set[Fraction] = set()
    converted: set[Fraction] = set()
    previous: Fraction | None = None  # the number just read: "5 million", "two thirds", "30 minutes"
    whole: Fraction | None = None  # a number before "and": "four and a half", "1 and 1/4"
    text = _UNIT_AND_A_HALF.sub(_one_and_a_half, question[:MAX_COMPLETION_CHARS])
    for hours, minutes in _HOURS_AND_MINUTES.findall(text):  # "1 hour and 45 minutes": 1.75 hours, 105 minutes
        converted |= {int(hours) + Fraction(int(minutes), 60), 60 * int(hours) + Fraction(minutes)}
    for m in _QUESTION_TOKEN.finditer(text):
        if m.group("word"):
            word = _WORD_FORMS.get(m.group("word").lower())
            if word is None:
                previous = whole = None
            elif word == "and":
                whole, previous = previous, None
            elif word not in ("a", "an"):
                previous, whole = _read_word(word, previous, whole, numbers, converted), None
            continue
        try:
            value = _literal(m.group("num"))[0]
        except ExpressionError:
            previous = whole = None
            continue
        numbers.add(value)
        if " " in m.group("num"):  # 2 1/2 also as 2 and 1/2
            numbers.update(map(Fraction, m.group("num").split(" ")))
        if m.group("den") and int(m.group("den")):
            numbers.add(Fraction(int(m.group("den"))))
            value /= int(m.group("den"))
            numbers.add(value)
        if m.group("pct"):
            numbers |= _percent(value)
        if whole is not None and value < 1:
            numbers.add(whole + value)
        previous, whole = value, None
    return frozenset(numbers | _counted(question[:MAX_COMPLETION_CHARS])), frozenset(converted)


_MONTH = re.compile(rf"\b({'|'.join(_MONTH_DAYS)})\b")
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_WEEKDAY = re.compile(rf"\b({'|'.join(_WEEKDAYS)})s?\b", re.IGNORECASE)
_DAY_RANGE = re.compile(rf"\b({'|'.join(_WEEKDAYS)})s? *(?:to|through|thru|until|till|-|–) *({'|'.join(_WEEKDAYS)})s?\b",
                        re.IGNORECASE)
_ITEM_WORD = r"(?:[\w$%'’-]|\.(?=\d))+"  # a word or number; a full stop ends the list
_ITEM = rf"{_ITEM_WORD}(?: {_ITEM_WORD}){{0,4}}"  # one to five words
_CLAUSE = r"(?!(?:then|so|if|but|and|or|which|who|while|when|because)\b)"  # ", then ...": not an item
_LIST = re.compile(rf"{_ITEM}((?:, {_CLAUSE}{_ITEM}){{1,20}}(,?)) (?:and|or|&) \w")  # bounded: linear
_COMPANY = re.compile(rf"\b(?:and|with|invited) (?:his|her|their|)\s*(\d+|{'|'.join(_NUMBER_WORDS)}) (?:best )?"
                      r"(?:friends|siblings|sisters|brothers|cousins|classmates|teammates|children|kids)\b", re.IGNORECASE)


def _counted(question: str) -> set[Fraction]:
    """Numbers a question states by naming or listing: the days of a month it names (June: 30),
    of a range of weekdays ("Monday to Thursday": 4) or of the weekdays it names, the items of a
    list of three or more ("Sarah, Mary, and Tuan": 3; "90, 80, 70 and 100": 4), and a party of
    someone and their friends ("Elisa and her two friends": 3)."""
    counted = {Fraction(_MONTH_DAYS[month]) for month in _MONTH.findall(question)}
    if len(named := {day.lower() for day in _WEEKDAY.findall(question)}) > 2:
        counted.add(Fraction(len(named)))  # "35 calls on Monday, 46 on Tuesday ... 31 on Friday": 5 days
    for first, last in _DAY_RANGE.findall(question):
        counted.add(Fraction((_WEEKDAYS.index(last.lower()) - _WEEKDAYS.index(first.lower())) % 7 + 1))
    for commas, oxford in _LIST.findall(question):
        counted.add(Fraction(commas.count(",") + (1 if oxford else 2)))
    for n in _COMPANY.findall(question):
        counted.add(Fraction(int(n) if n.isdigit() else _NUMBER_WORDS[n.lower()]) + 1)
    return counted


def _read_word(word: str, previous: Fraction | None, whole: Fraction | None, numbers: set[Fraction],
               converted: set[Fraction]) -> Fraction | None:
    """Add what a known word states to `numbers` (a unit word: its conversions of the number before
    it to `converted`); return the number it leaves for the next word."""
    value = None
    if word in _NUMBER_WORDS:
        value = Fraction(_NUMBER_WORDS[word])
        if previous is not None and previous in _TENS and value < 10:
            value += previous  # twenty-five
    elif word in SCALE_WORDS:
        value = SCALE_WORDS[word] * (previous if previous is not None else Fraction(1))
    elif word in _MULTIPLIER_WORDS:
        numbers.add(Fraction(_MULTIPLIER_WORDS[word]))
    elif word == "percent" and previous is not None:
        numbers |= _percent(previous)
    if word in _FRACTION_WORDS:
        n = _FRACTION_WORDS[word]
        numbers |= {Fraction(n), Fraction(1, n)}
        value = (previous if previous is not None else Fraction(1)) / n  # "two thirds"
        if whole is not None:
            value += whole  # "four and a half"
    if word in _UNIT_FACTORS:
        if previous is not None:
            for factor in _UNIT_FACTORS[word]:
                converted |= {previous * factor, previous / factor}
    if value is not None:
        numbers.add(value)
    return value


_TENS = frozenset(Fraction(t) for t in range(20, 100, 10))
_UNIT_WORD = re.compile(r"[A-Za-z]+|%")


def unit_constants(text: str) -> frozenset[Fraction]:
    """The conversion factors of the unit words in `text` and the counts its words imply (minutes:
    60; week: 7 and 52; %: 100 and 0.01; weekdays: 5; see _UNIT_WORDS and _COUNT_WORDS): numbers a
    step may use without a source where its question or its prose names the unit, which never
    ground a claim on their own (as CONSTANTS)."""
    found: set[Fraction] = set()
    for word in set(_UNIT_WORD.findall(text[:MAX_COMPLETION_CHARS])):
        unit = "percent" if word == "%" else _WORD_FORMS.get(word.lower())
        if unit in _IMPLIED:
            found |= _IMPLIED[unit]
    return frozenset(found)


_NEXT_WORD = re.compile(r"\s*([A-Za-z]+)")


@lru_cache(maxsize=4096)  # RL scores a group of completions per question
def stated_numbers(question: str) -> tuple[frozenset[Fraction], ...]:
    """The numbers a question writes in digits, each as the forms a step may use it in (its value
    and, read with the word after it, the unit conversions and percent forms `question_numbers`
    gives: "30 minutes" is 30, 0.5 or 1800; the unit's own factors, 60 for "minutes", are not
    this number's, unless it is the number written: "an hour has 60 minutes"). One entry per
    distinct number. Number words ("three") are left out."""
    stated: list[frozenset[Fraction]] = []
    text = question[:MAX_COMPLETION_CHARS]
    for m in _QUESTION_TOKEN.finditer(text):
        if not m.group("num"):
            continue
        word = _NEXT_WORD.match(text, m.end())
        word = word.group(1) if word else ""
        forms = question_numbers(f"{m.group(0)} {word}") - question_numbers(word) | question_numbers(m.group(0))
        if forms and forms not in stated:
            stated.append(forms)
    return tuple(stated)
