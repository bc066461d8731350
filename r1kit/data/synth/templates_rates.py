"""Situation templates built on rates, units and shapes: machines and crews at work, speed and
distance, fractions and percentages of a group, time and measure conversions, dozens, recipes,
floor areas and fences.

Each builder `(draft, k) -> question` makes one problem with exactly k steps, recorded on the draft;
the step counts each one accepts are in r1kit.data.synth.templates.TEMPLATES.
"""

from __future__ import annotations

import math

from r1kit.data.synth.draft import Draft, Reject, pairs_within


_MACHINES = [("printer", "prints", "print", "pages"), ("machine", "fills", "fill", "bottles"),
             ("oven", "bakes", "bake", "loaves"), ("robot", "builds", "build", "toy cars"),
             ("loom", "weaves", "weave", "scarves"), ("press", "stamps", "stamp", "coins")]


def machine_rate(d: Draft, k: int) -> str:
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


def speed_distance(d: Draft, k: int) -> str:
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
            raise Reject
        d.op(speed, "*", h2)
        return f"{text} At the same speed, how many km does {p.she} {go} in {h2} hours?"
    trip = d.num() if k == 4 else None
    (h1, s1), (h2, s2) = pairs_within(d, 2, trip - 1 if trip else d.result_max)
    total = d.op(d.op(s1, "*", h1), "+", d.op(s2, "*", h2))
    legs = f"{p.name} {goes} at {s1} km an hour for {h1} hours, then at {s2} km an hour for {h2} hours."
    if k == 3:
        return f"{legs} How many km does {p.she} {go} in total?"
    d.op(trip, "-", total)
    return f"{p.name}'s trip is {trip} km long. {legs} How many km of the trip are left?"


# (where the group is, what its members are, what some of them do, what the others do)
_GROUPS = [("A class has {n} pupils.", "pupils", "walk to school", "do not walk to school"),
           ("A box holds {n} chocolates.", "chocolates", "have nuts", "have no nuts"),
           ("A farm has {n} sheep.", "sheep", "are black", "are not black"),
           ("A shelf holds {n} books.", "books", "are novels", "are not novels"),
           ("A car park has {n} cars.", "cars", "are red", "are not red"),
           ("A garden has {n} flowers.", "flowers", "are roses", "are not roses"),
           ("A town has {n} houses.", "houses", "have a garden", "have no garden")]


def fraction_of(d: Draft, k: int) -> str:
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


def percent_of(d: Draft, k: int) -> str:
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


def time_units(d: Draft, k: int) -> str:
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


def measures(d: Draft, k: int) -> str:
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


def dozens(d: Draft, k: int) -> str:
    (verb, things), p, twelve = d.pick(_DOZEN_THINGS), d.person(), d.fact(12)
    n_dozen = d.count()
    have = d.op(n_dozen, "*", twelve)
    made = f"{p.name} {verb} {n_dozen} dozen {things}"
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


_INGREDIENTS = [("cake", "cakes", "eggs"), ("pie", "pies", "apples"), ("pot of soup", "pots of soup", "carrots"),
                ("salad", "salads", "tomatoes"), ("loaf of bread", "loaves of bread", "cups of flour"),
                ("batch of pancakes", "batches of pancakes", "spoons of sugar")]


def recipe(d: Draft, k: int) -> str:
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


def factory_workers(d: Draft, k: int) -> str:
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


def area_paint(d: Draft, k: int) -> str:
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


def fence(d: Draft, k: int) -> str:
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
