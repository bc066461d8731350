"""Situation templates about money: shopping and change, unit prices, weekly savings, a school trip,
a sale, wages, fuel and a shared bill.

Each builder `(draft, k) -> question` makes one problem with exactly k steps, recorded on the draft;
the step counts each one accepts are in r1kit.data.synth.templates.TEMPLATES.
"""

from __future__ import annotations

from r1kit.data.synth.draft import Draft, Reject, join_and, pairs_within


_SHOP_ITEMS = [("pen", "pens"), ("notebook", "notebooks"), ("mug", "mugs"), ("ball", "balls"), ("candle", "candles"),
               ("shirt", "shirts"), ("cap", "caps"), ("toy car", "toy cars"), ("plant", "plants"), ("lamp", "lamps"),
               ("scarf", "scarves"), ("bowl", "bowls"), ("kite", "kites"), ("puzzle", "puzzles")]


def shopping_change(d: Draft, k: int) -> str:
    p = d.person()
    kinds, change = (k + 1) // 2, k % 2 == 0
    items = d.sample(_SHOP_ITEMS, kinds)
    # with change the note (a drawn number, so <= max_operand) must exceed the total
    pairs = pairs_within(d, kinds, d.max_operand - 1 if change else d.result_max)
    total = d.total([d.op(q, "*", price) for q, price in pairs])
    bought = [f"{q} {many} at {price} dollars each" for (q, price), (_, many) in zip(pairs, items)]
    text = f"{p.name} buys {join_and(bought)}."
    if change:
        note = d.num(total + 1)
        d.op(note, "-", total)
        return f"{text} {p.She} pays with {note} dollars. How many dollars does {p.she} get back in change?"
    return text + d.pick([f" How many dollars does {p.she} spend in total?",
                          f" How much does {p.she} pay altogether, in dollars?"])


def unit_price(d: Draft, k: int) -> str:
    one, many = d.pick(_SHOP_ITEMS)
    q = d.count(2, d.max_operand // 2)
    total = q * d.num(2, d.max_operand // q)
    text = f"{d.pick(['In a shop', 'At a market', 'At a stall'])}, {q} {many} cost {total} dollars."
    unit = d.op(total, "/", q)
    if k == 1:
        return f"{text} How many dollars does one {one} cost?"
    q2 = d.count(2)
    if q2 == q:
        raise Reject
    cost = d.op(unit, "*", q2)
    if k == 2:
        return f"{text} How many dollars do {q2} {many} cost?"
    p = d.person()
    note = d.num(cost + 1)
    d.op(note, "-", cost)
    return f"{text} {p.name} buys {q2} {many} and pays with {note} dollars. How many dollars does {p.she} get back?"


_PURCHASES = ["bike", "tablet", "guitar", "tent", "camera", "pair of skates"]


def weekly_savings(d: Draft, k: int) -> str:
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


_OUTINGS = ["a museum", "a zoo", "a theatre", "a science fair", "an aquarium"]


def school_trip(d: Draft, k: int) -> str:
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


def discount(d: Draft, k: int) -> str:
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


_WEEKDAYS = ["Monday", "Tuesday", "Wednesday"]


def wages(d: Draft, k: int) -> str:
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
    shifts = join_and([f"{h} hours on {day}" for h, day in zip(hours, _WEEKDAYS)])
    text = f"{p.name} works {shifts}. {p.She} earns {rate} dollars an hour."
    if k == 2:
        return f"{text} How many dollars does {p.she} earn?"
    spent = d.num(2, earned - 1)
    d.op(earned, "-", spent)
    on = d.pick(["food", "books", "a present", "bus fares"])
    return f"{text} {p.She} spends {spent} dollars on {on}. How many dollars does {p.she} have left?"


def fuel(d: Draft, k: int) -> str:
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


def split_bill(d: Draft, k: int) -> str:
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
