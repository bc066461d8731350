"""The words of the phrasing grammar (grammar.py): situations, operation verbs and sentence frames,
each marked for the training side or the unseen side of the template-held-out split.

A frame is a format string over these fields: {S} / {s} the subject (a name the first time, then
a pronoun), {his}, {a} {b} {n} numbers, {items} the situation's things, {cont} / {conts} its
container, {sharers}, {v} a verb of the frame's kind, {other} a second person. Frames of one kind
make the same step from their numbers in the order they are written, so the trace reads the
question left to right.

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
FRAMES = {
    "start": {
        "train": ("{S} has {a} {items}.", "{S} had {a} {items} on Monday.", "{S} counts {a} {items} in {his} room."),
        "unseen": ("{S} starts the day with {a} {items}.", "At first, {s} owns {a} {items}."),
    },
    "groups": {
        "train": ("{S} has {a} {conts} with {b} {items} in each {cont}.",
                  "{S} fills {a} {conts}, putting {b} {items} in each.",
                  "There are {a} {conts} of {items}, and each {cont} holds {b} {items}."),
        "unseen": ("Each of {S}'s {a} {conts} contains {b} {items}.",
                   "{S} keeps {a} {conts}. Every {cont} has {b} {items} inside."),
    },
    "rate": {
        "train": ("{S} {v} {a} {items} every day for {b} days.", "For {a} days, {s} {v} {b} {items} each day."),
        "unseen": ("{S} {v} {a} {items} a day, {b} days in a row.",),
    },
    "gain": {
        "train": ("{S} {v} {n} more {items}.", "Then {s} {v} {n} {items}.", "Later, {s} {v} another {n} {items}."),
        "unseen": ("After that, {s} also {v} {n} {items}.", "The next day {s} {v} {n} extra {items}."),
    },
    "gain_groups": {
        "train": ("{S} {v} {a} more {conts} with {b} {items} each.",),
        "unseen": ("Then {s} {v} {a} {conts} holding {b} {items} apiece.",),
    },
    "lose": {
        "train": ("{S} {v} {n} of them.", "Then {s} {v} {n} {items}.", "Later, {s} {v} {n} of the {items}."),
        "unseen": ("After that, {s} {v} {n} of the {items}.", "By evening {s} {v} {n}."),
    },
    "share": {
        "train": ("{S} shares the {items} equally among {n} {sharers}. How many {items} does each of them get?",
                  "{S} divides the {items} equally between {n} {sharers}. How many {items} does each one get?"),
        "unseen": ("{S} splits all the {items} evenly among {n} {sharers}. How many {items} does every one of them receive?",),
    },
    "pack": {
        "train": ("{S} puts the {items} into {conts} of {n}. How many {conts} does {s} fill?",),
        "unseen": ("The {items} are packed {n} in every {cont}. How many {conts} are needed?",),
    },
    "times": {
        "train": ("{other} has {n} times as many {items} as {s}. How many {items} does {other} have?",),
        "unseen": ("{other} owns {n} times that number of {items}. How many {items} does {other} own?",),
    },
    "ask": {
        "train": ("How many {items} does {s} have now?", "How many {items} does {s} have in the end?"),
        "unseen": ("What is the number of {items} {s} has at the end?", "Find how many {items} {s} ends up with."),
    },
    "ask_left": {
        "train": ("How many {items} are left?", "How many {items} does {s} have left?"),
        "unseen": ("How many {items} remain?",),
    },
    # a later turn of a dialogue: one more step on the earlier answer, question included
    "follow_gain": {
        "train": ("Then {s} {v} {n} more. How many {items} does {s} have now?", "After that, {s} {v} another {n}. How many now?"),
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

# sentences with a number that no step uses (TinyGSM: a third of problems carry one)
DISTRACTORS = {
    "train": ("{S} is {x} years old.", "{other} has {x} stickers.", "The shop is {x} metres from {his} house."),
    "unseen": ("{other} went to the park {x} times last month.", "It is {x} degrees outside."),
}

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve").split()
