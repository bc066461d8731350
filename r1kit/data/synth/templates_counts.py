"""Situation templates about counting things: sharing and packing, ages, a running total that rises
and falls (temperature, bus passengers, a collection, pages read) and legs or wheels.

Each builder `(draft, k) -> question` makes one problem with exactly k steps, recorded on the draft;
the step counts each one accepts are in r1kit.data.synth.templates.TEMPLATES.
"""

from __future__ import annotations

from r1kit.data.synth.draft import PEOPLE, Draft, join_and


_LOOSE_THINGS = ["sweets", "marbles", "stickers", "cards", "grapes", "cookies", "coins", "shells", "buttons"]
_SHARERS = ["friends", "children", "classmates", "cousins"]


def share_equally(d: Draft, k: int) -> str:
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


def ages(d: Draft, k: int) -> str:
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


# (who, what, for whom)
_PACK_SCENES = [("pencils", "pupils"), ("balloons", "guests"), ("bottles of water", "players"), ("stickers", "children"),
                ("candles", "tables"), ("seed packets", "gardeners")]


def packs(d: Draft, k: int) -> str:
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
    n_packs = d.op(need, "/", size)
    text = f"{p.name} needs {each} {things} for each of {many} {whom}. The {things} come in packs of {size}."
    if k == 2:
        return f"{text} How many packs must {p.she} buy?"
    price = d.count()
    cost = d.op(n_packs, "*", price)
    text += f" Each pack costs {price} dollars."
    if k == 3:
        return f"{text} How many dollars does {p.she} spend?"
    note = d.num(cost + 1)
    d.op(note, "-", cost)
    return f"{text} {p.She} pays with {note} dollars. How many dollars does {p.she} get back?"


_TIMES_OF_DAY = ["By noon", "In the afternoon", "In the evening", "At night", "By midnight", "Before dawn"]


def temperature(d: Draft, k: int) -> str:
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


def bus_passengers(d: Draft, k: int) -> str:
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


def stickers(d: Draft, k: int) -> str:
    p, things = d.person(), d.pick(_COLLECTIONS)
    friend = d.pick([q for q in PEOPLE if q.name != p.name])
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


def reading(d: Draft, k: int) -> str:
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


_ANIMALS = [("chicken", "chickens", 2), ("cow", "cows", 4), ("spider", "spiders", 8), ("beetle", "beetles", 6)]
_VEHICLES = [("car", "cars", 4), ("bike", "bikes", 2), ("tricycle", "tricycles", 3), ("lorry", "lorries", 6)]


_HERDS = [("goats", "ducks", "lambs"), ("sheep", "pigs", "calves"), ("rabbits", "hens", "turkeys"),
          ("horses", "donkeys", "geese")]


def animal_legs(d: Draft, k: int) -> str:
    if k in (2, 4):  # feeding: how many animals, times food per animal (and days)
        kinds = d.pick(_HERDS)[: 2 if k == 2 else 3]
        counts = [d.num() for _ in kinds]
        animals = d.total(counts)
        food = d.count()
        eaten = d.op(animals, "*", food)
        herd = join_and([f"{n} {a}" for n, a in zip(counts, kinds)])
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
    text = f"{place} {join_and([f'{n} {many}' for n, (_, many, _) in zip(counts, kinds)])}."
    each = join_and([f"each {one} has {per} {part}" for one, _, per in kinds])
    return f"{text} {each[0].upper() + each[1:]}. How many {part} are there {'in total' if k > 1 else 'altogether'}?"
