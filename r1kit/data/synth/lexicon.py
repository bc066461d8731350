"""The words of the phrasing grammar (grammar.py): situations, operation verbs and sentence frames,
each marked for the training side or the unseen side of the template-held-out split.

A frame is a format string over these fields: {S} / {s} the subject (a name the first time, then
a pronoun), {o} the same person as an object, {his}, {a} {b} {n} numbers, {items} the situation's
things, {cont} / {conts} its container, {sharers}, {v} a verb of the frame's kind, {other} a second
person. Frames of one kind make the same step from their numbers, each step taking its operands in
the order the question writes them, so the trace reads the question left to right.

The unseen side holds out whole situations (their nouns, containers and verbs), frames of every
kind, and generic operation verbs: a problem on it shares no situation, no frame and no generic
verb with training (`docs/data.md`, "Template-held-out split").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Situation:
    name: str
    items: tuple[str, ...]  # plural nouns of the things counted
    cont: tuple[str, str]  # a container: singular, plural
    gain: tuple[str, ...]  # the situation's own verbs that add things (third person)
    lose: tuple[str, ...]  # ... and that take them away
    sharers: tuple[str, ...]  # people things are shared among


SITUATIONS = {
    "train": [
        Situation("bakery", ("muffins", "cupcakes", "bread rolls", "cookies"), ("tray", "trays"), ("bakes",), ("sells",), ("customers", "neighbours")),
        Situation("garden", ("tulips", "roses", "carrots", "tomatoes"), ("row", "rows"), ("plants", "grows"), ("picks",), ("neighbours", "friends")),
        Situation("library", ("books", "magazines", "comics"), ("shelf", "shelves"), ("orders",), ("lends out",), ("classes", "readers")),
        Situation("farm", ("eggs", "potatoes", "apples"), ("basket", "baskets"), ("harvests",), ("sells",), ("families", "shops")),
        Situation("classroom", ("pencils", "crayons", "erasers"), ("pack", "packs"), ("orders",), ("returns",), ("students", "pupils")),
        Situation("toy shop", ("toy cars", "dolls", "puzzles"), ("box", "boxes"), ("orders",), ("sells",), ("children", "shops")),
        Situation("beach", ("shells", "pebbles"), ("bucket", "buckets"), ("digs up",), ("drops",), ("cousins", "friends")),
        Situation("craft", ("beads", "ribbons"), ("jar", "jars"), ("makes",), ("uses up",), ("classmates", "friends")),
        Situation("fruit stand", ("oranges", "pears", "bananas"), ("crate", "crates"), ("unloads",), ("sells",), ("customers", "families")),
        Situation("party", ("balloons", "candles", "party hats"), ("bag", "bags"), ("blows up",), ("pops",), ("guests", "children")),
        Situation("sports club", ("tennis balls", "footballs"), ("net", "nets"), ("orders",), ("loses",), ("teams", "players")),
        Situation("office", ("folders", "pens", "envelopes"), ("drawer", "drawers"), ("orders",), ("uses",), ("workers", "desks")),
        Situation("kitchen", ("plates", "cups", "spoons"), ("stack", "stacks"), ("washes",), ("breaks",), ("tables", "guests")),
        Situation("pet shop", ("goldfish", "hamsters"), ("tank", "tanks"), ("orders",), ("sells",), ("families", "owners")),
        Situation("school fair", ("tickets", "prizes"), ("roll", "rolls"), ("prints",), ("gives out",), ("stalls", "volunteers")),
        Situation("candy shop", ("lollipops", "chocolates", "toffees"), ("jar", "jars"), ("makes",), ("sells",), ("children", "customers")),
        Situation("bike shop", ("helmets", "tyres", "bike bells"), ("rack", "racks"), ("orders",), ("sells",), ("riders", "customers")),
        Situation("camp", ("tents", "torches", "blankets"), ("pile", "piles"), ("packs",), ("lends",), ("campers", "scouts")),
        Situation("hospital", ("bandages", "masks", "gloves"), ("kit", "kits"), ("orders",), ("uses",), ("nurses", "wards")),
        Situation("science lab", ("test tubes", "magnets", "batteries"), ("tray", "trays"), ("orders",), ("uses up",), ("groups", "students")),
        Situation("shoe shop", ("sandals", "boots", "slippers"), ("shelf", "shelves"), ("orders",), ("sells",), ("stores", "customers")),
        Situation("cafe", ("sandwiches", "bagels", "pies"), ("plate", "plates"), ("makes",), ("serves",), ("tables", "guests")),
        Situation("market", ("watermelons", "onions", "lemons"), ("sack", "sacks"), ("fetches",), ("sells",), ("stalls", "cooks")),
        Situation("art class", ("paintbrushes", "canvases", "paint pots"), ("box", "boxes"), ("fetches",), ("gives out",), ("artists", "students")),
        Situation("hardware store", ("nails", "screws", "bolts"), ("bag", "bags"), ("stocks",), ("sells",), ("builders", "workers")),
        Situation("stationery shop", ("notebooks", "rulers", "glue sticks"), ("box", "boxes"), ("stocks",), ("sells",), ("pupils", "offices")),
        Situation("aquarium", ("starfish", "snails", "crabs"), ("pool", "pools"), ("brings in",), ("moves out",), ("divers", "tanks")),
        Situation("bee farm", ("honey jars", "candles", "combs"), ("crate", "crates"), ("fills",), ("sells",), ("markets", "shops")),
        Situation("music shop", ("guitar strings", "drumsticks", "flutes"), ("case", "cases"), ("orders",), ("sells",), ("bands", "students")),
        Situation("post office", ("letters", "parcels", "stamps"), ("sack", "sacks"), ("sorts",), ("delivers",), ("streets", "drivers")),
        Situation("greenhouse", ("seedlings", "cactuses", "herbs"), ("tray", "trays"), ("grows",), ("repots",), ("gardeners", "neighbours")),
        Situation("toy workshop", ("yo-yos", "kites", "spinning tops"), ("crate", "crates"), ("builds",), ("gives away",), ("children", "clubs")),
        Situation("picnic", ("grapes", "crackers", "juice boxes"), ("basket", "baskets"), ("packs",), ("eats",), ("friends", "families")),
        Situation("stable", ("carrots", "apples", "horseshoes"), ("bucket", "buckets"), ("fetches",), ("uses",), ("horses", "riders")),
        Situation("laundry", ("socks", "towels", "shirts"), ("basket", "baskets"), ("washes",), ("folds away",), ("rooms", "guests")),
        Situation("car park", ("cones", "tickets", "signs"), ("stack", "stacks"), ("sets out",), ("removes",), ("lanes", "wardens")),
        Situation("game club", ("cards", "dice", "tokens"), ("tin", "tins"), ("buys",), ("loses",), ("players", "tables")),
        Situation("museum", ("postcards", "posters", "badges"), ("rack", "racks"), ("prints",), ("sells",), ("visitors", "guides")),
        Situation("harbour", ("ropes", "buoys", "nets"), ("shed", "sheds"), ("hauls in",), ("sends off",), ("boats", "crews")),
        Situation("ice cream van", ("cones", "ice lollies", "tubs"), ("freezer", "freezers"), ("loads",), ("sells",), ("children", "families")),
    ],
    "unseen": [
        Situation("orchard", ("plums", "cherries", "peaches"), ("barrel", "barrels"), ("gathers",), ("ships",), ("packers", "buyers")),
        Situation("bookshop", ("journals", "diaries", "atlases"), ("carton", "cartons"), ("restocks",), ("clears out",), ("schools", "branches")),
        Situation("zoo", ("hay bales", "melons", "fish"), ("cart", "carts"), ("brings",), ("feeds out",), ("keepers", "enclosures")),
        Situation("collection", ("fossils", "gemstones", "medals"), ("chest", "chests"), ("trades for",), ("swaps away",), ("collectors", "club members")),
        Situation("flower shop", ("lilies", "daisies", "sunflowers"), ("vase", "vases"), ("arranges",), ("wraps up",), ("weddings", "hotels")),
    ],
}

# generic verbs that add or take away things; a frame uses either these or the situation's own
GAIN = {"train": ("buys", "gets", "finds", "receives", "collects"), "unseen": ("acquires", "wins", "is handed")}
LOSE = {"train": ("gives away", "loses", "uses", "sells"), "unseen": ("donates", "throws away", "hands out")}

# Frames by kind. start: the first quantity (no step); groups / rate: a product (one step);
# gain / lose: one step; gain_groups: two (a product, then a sum); share / pack / times: the final
# step, question included; ask: the question after a gain or lose; ask_left: after a lose only.
# The training side composes each kind's frames from parts (when, the clause, what follows), so that
# no one sentence shape stands for its step: a model must read where the numbers stand and what
# the words say (docs/data.md, "Template-held-out split"). The unseen side stays a few fixed frames
# that the training side never produces, nor their distinctive phrases (tests/test_grammar.py).
# A frame starts lower case where a part may come before it; the writer capitalises each sentence.
_WHEN_FIRST = ("", "on Monday ", "in the morning ", "at the start of the week ", "this morning ")
_WHEN = ("", "then ", "later ", "soon ", "afterwards ", "on Tuesday ", "in the afternoon ", "that week ",
         "after lunch, ", "a little later, ", "on the weekend ", "the same day ", "one day ", "during the day ")
_TAIL = ("", " too", " that day", " as well", " again")
# words that change no step, before the things counted now and then on the training side: a word the
# model has not seen must not change what it computes either
ADJECTIVES = ("small", "big", "new", "old", "red", "blue", "shiny", "fresh", "tiny", "plain", "nice", "spare")


def _compose(whens: tuple[str, ...], clauses: tuple[str, ...], tails: tuple[str, ...] = ("",)) -> tuple[str, ...]:
    """Every `when + clause + tail + "."`, in a fixed order (frame ids index it)."""
    return tuple(f"{w}{c}{t}." for c in clauses for w in whens for t in tails)


def _ask(statements: tuple[str, ...], questions: tuple[str, ...]) -> tuple[str, ...]:
    """Every `statement. question` of a last step."""
    return tuple(f"{s}. {q}" for s in statements for q in questions)


FRAMES = {
    "start": {
        "train": _compose(_WHEN_FIRST, ("{s} has {a} {items}", "{s} counts {a} {items} in {his} room", "{s} keeps {a} {items}",
                                        "{s} has a pile of {a} {items}", "there are {a} {items} in {s}'s room",
                                        "{a} {items} belong to {s}", "{s}'s big {cont} holds {a} {items}")),
        "unseen": ("{S} starts the day with {a} {items}.", "At first, {s} owns {a} {items}."),
    },
    "groups": {  # {a}: how many containers, {b}: how many in each; the step multiplies them in the order written
        "train": _compose(_WHEN_FIRST, ("{s} has {a} {conts} with {b} {items} in each {cont}",
                                        "{s} has {a} {conts} of {items} with {b} in each",
                                        "{s} has {a} {conts}, and each {cont} holds {b} {items}",
                                        "{s} fills {a} {conts}, putting {b} {items} in each",
                                        "{s} has {a} {conts} of {b} {items}",
                                        "{s} sets out {a} {conts} with {b} {items} per {cont}",
                                        "there are {a} {conts} of {items}, and each {cont} holds {b} {items}",
                                        "{s} has {a} full {conts}. Each {cont} holds {b} {items}",
                                        "{s} has {a} {conts}. Every {cont} holds {b} {items}",
                                        "{s} carries {a} {conts}. There are {b} {items} in each {cont}",
                                        "{s} has {a} {conts}, and every {cont} has {b} {items} in it",
                                        "{s} puts {b} {items} into each of {a} {conts}",
                                        "there are {b} {items} in each of {s}'s {a} {conts}",
                                        "{b} {items} fit in one {cont}, and {s} has {a} full {conts}")),
        "unseen": ("Each of {S}'s {a} {conts} contains {b} {items}.",
                   "{S} keeps {a} {conts}. Every {cont} has {b} {items} inside."),
    },
    "rate": {
        "train": _compose(_WHEN_FIRST[:1], ("{s} {v} {a} {items} every day for {b} days", "for {a} days, {s} {v} {b} {items} each day",
                                            "{s} {v} {a} {items} each week for {b} weeks", "every day for {a} days, {s} {v} {b} {items}",
                                            "{s} {v} {a} {items} per day over {b} days", "on each of {a} days, {s} {v} {b} {items}",
                                            "for {a} weeks, {s} {v} {b} {items} every week")),
        "unseen": ("{S} {v} {a} {items} a day, {b} days in a row.",),
    },
    "gain": {
        "train": _compose(_WHEN, ("{s} {v} {n} more {items}", "{s} {v} {n} {items}", "{s} {v} another {n} {items}",
                                  "{s} {v} {n} new {items}", "{s} {v} {n} more", "{other} gives {o} {n} more {items}",
                                  "{s} {v} some more {items}, {n} of them"), _TAIL),
        "unseen": ("After that, {s} also {v} {n} {items}.", "The next day {s} {v} {n} extra {items}."),
    },
    "gain_groups": {
        "train": _compose(_WHEN, ("{s} {v} {a} more {conts} with {b} {items} each", "{s} {v} {a} {conts} of {b} {items}",
                                  "{s} {v} {a} more {conts}, each with {b} {items}", "{other} gives {o} {a} {conts} of {b} {items}",
                                  "{s} {v} {a} {conts} that hold {b} {items} each",
                                  "{s} {v} {b} {items} in each of {a} more {conts}")),
        "unseen": ("Then {s} {v} {a} {conts} holding {b} {items} apiece.",),
    },
    "lose": {
        "train": _compose(_WHEN, ("{s} {v} {n} of them", "{s} {v} {n} {items}", "{s} {v} {n} of the {items}",
                                  "{s} {v} {n} of {his} {items}", "{other} takes {n} of the {items}"), _TAIL[:3]),
        "unseen": ("After that, {s} {v} {n} of the {items}.", "By evening {s} {v} {n}."),
    },
    "share": {
        "train": _ask(("{s} shares the {items} equally among {n} {sharers}", "{s} divides the {items} equally between {n} {sharers}",
                       "{s} gives the {items} out equally to {n} {sharers}", "{s} shares them equally among {n} {sharers}",
                       "the {items} are shared equally among {n} {sharers}"),
                      ("How many {items} does each of them get?", "How many {items} does each one get?",
                       "How many does each of the {sharers} get?", "How many {items} go to each of them?")),
        "unseen": ("{S} splits all the {items} evenly among {n} {sharers}. How many {items} does every one of them receive?",),
    },
    "pack": {
        "train": _ask(("{s} puts the {items} into {conts} of {n}", "{s} packs the {items} {n} to a {cont}",
                       "{s} puts {n} {items} in each {cont}", "{s} sorts the {items} into {conts}, {n} per {cont}"),
                      ("How many {conts} does {s} fill?", "How many {conts} does {s} use?", "How many full {conts} are there?")),
        "unseen": ("The {items} are packed {n} in every {cont}. How many {conts} are needed?",),
    },
    "times": {
        "train": _ask(("{other} has {n} times as many {items} as {o}", "{other} has {n} times as many {items} as {s} does",
                       "{other} collects {n} times as many {items} as {s} has"),
                      ("How many {items} does {other} have?", "How many does {other} have?", "How many {items} has {other} got?")),
        "unseen": ("{other} owns {n} times that number of {items}. How many {items} does {other} own?",),
    },
    "ask": {
        "train": ("How many {items} does {s} have now?", "How many {items} does {s} have in the end?",
                  "How many {items} does {s} have in total?", "How many {items} does {s} have altogether?",
                  "How many {items} are there now?", "How many does {s} have now?", "Now how many {items} does {s} have?",
                  "Work out how many {items} {s} has now."),
        "unseen": ("What is the number of {items} {s} has at the end?", "Find how many {items} {s} ends up with."),
    },
    "ask_left": {
        "train": ("How many {items} are left?", "How many {items} does {s} have left?", "How many are left now?",
                  "How many {items} does {s} still have?", "How many {items} are still there?"),
        "unseen": ("How many {items} remain?",),
    },
# a later turn of a dialogue: one more step on the earlier answer, question included
    "follow_gain": {
        "train": ("Then {s} {v} {n} more. How many {items} does {s} have now?", "Later, {s} {v} another {n}. How many now?"),
        "unseen": ("Later {s} {v} {n} extra {items}. What is the total now?",),
    },
    "follow_lose": {
        "train": ("Then {s} {v} {n}. How many now?", "Then {s} {v} {n} of them. How many {items} are left?"),
        "unseen": ("Next, {s} {v} {n} of those {items}. How many remain now?",),
    },
    "follow_share": {
        "train": ("Then {s} shares them equally among {n} {sharers}. How many does each get?",),
        "unseen": ("Now {s} splits them evenly among {n} {sharers}. How many does every one of them receive?",),
    },
}

# what makes each unseen frame or distractor its own: none of it may occur in training's text (its common words,
# "how many", "of the", may); tests/test_grammar.py checks that every one is the unseen side's, and
# word_noise.py that no swap of training words writes one
UNSEEN_PHRASES = ("starts the day", "at first", "owns", "contains", "inside", "a day,", "in a row", "after that",
                  "the next day", "extra", "apiece", "holding", "by evening", "splits", "evenly", "receive?",
                  "are packed", "are needed", "that number", "what is the number", "find how many", "ends up",
                  "remain", "what is the total", "next,", "of those", "went to the park", "degrees outside")

# sentences with a number that no step uses (TinyGSM: a third of problems carry one)
DISTRACTORS = {
    "train": ("{S} is {x} years old.", "{other} has {x} stickers.", "The shop is {x} metres from {his} house.",
              "{other} is {x} years old.", "{his} street has {x} houses.", "The bus ride takes {x} minutes.",
              "{other} reads {x} pages of a book.", "{other}'s class has {x} students.", "The {cont} weighs {x} grams.",
              "{other} walks {x} metres to school.", "{S} has lived in the town for {x} months."),
    "unseen": ("{other} went to the park {x} times last month.", "It is {x} degrees outside."),
}

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve").split()
