"""The situation templates: one table of all 27, whose builders live in the theme modules
templates_money, templates_rates and templates_counts. The generator draws from the table in its
order, so reordering it changes every seed's problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1kit.data.synth import templates_counts as counts, templates_money as money, templates_rates as rates
from r1kit.data.synth.draft import Draft

# Each template builds one problem with exactly k steps and returns the question text; its steps
# are recorded on the draft. Numbers are drawn in the order the question states them wherever
# the arithmetic allows, so the steps read the question left to right.


@dataclass(frozen=True)
class Template:
    """A situation and the step counts it can make."""

    name: str
    steps: tuple[int, ...]
    build: Callable[[Draft, int], str]


TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template("shopping_change", (1, 2, 3, 4, 5, 6), money.shopping_change),
    Template("unit_price", (1, 2, 3), money.unit_price),
    Template("machine_rate", (1, 2, 3, 4), rates.machine_rate),
    Template("speed_distance", (1, 2, 3, 4), rates.speed_distance),
    Template("share_equally", (1, 2, 3, 4), counts.share_equally),
    Template("ages", (1, 2, 3, 4), counts.ages),
    Template("fraction_of", (1, 2, 3), rates.fraction_of),
    Template("percent_of", (2, 3), rates.percent_of),
    Template("time_units", (1, 2, 3), rates.time_units),
    Template("measures", (1, 2, 3), rates.measures),
    Template("dozens", (1, 2, 3, 4), rates.dozens),
    Template("weekly_savings", (1, 2, 3, 4), money.weekly_savings),
    Template("recipe", (1, 2, 3, 4), rates.recipe),
    Template("factory_workers", (1, 2, 3, 4), rates.factory_workers),
    Template("packs", (1, 2, 3, 4), counts.packs),
    Template("area_paint", (1, 2, 3, 4, 5), rates.area_paint),
    Template("fence", (1, 2, 3), rates.fence),
    Template("temperature", (1, 2, 3, 4, 5, 6), counts.temperature),
    Template("bus_passengers", (1, 2, 3, 4, 5, 6), counts.bus_passengers),
    Template("stickers", (1, 2, 3, 4, 5, 6), counts.stickers),
    Template("school_trip", (1, 2, 3, 4), money.school_trip),
    Template("discount", (1, 2, 3, 4), money.discount),
    Template("reading", (1, 2, 3, 4), counts.reading),
    Template("wages", (1, 2, 3, 4), money.wages),
    Template("animal_legs", (1, 2, 3, 4, 5), counts.animal_legs),
    Template("fuel", (1, 2, 3), money.fuel),
    Template("split_bill", (1, 2, 3, 4), money.split_bill),
]}
