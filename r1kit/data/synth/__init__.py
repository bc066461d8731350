"""Synthetic, verifiable maths word problems: 27 situation templates composed into 1-6 step chains,
a phrasing grammar with a template-held-out split, and arithmetic drills.

    core.py              synth, synth_splits: the draw loop, operation weights, train/test disjointness
    draft.py             Draft: draws a problem's numbers, records its steps; what every problem guarantees
    templates.py         Template and TEMPLATES, the one table of all templates
    templates_money.py   shopping, prices, savings, wages, bills
    templates_rates.py   rates, units, fractions, percentages, shapes
    templates_counts.py  sharing, ages, running totals, legs and wheels
    drills.py            drills: one-claim and chained arithmetic drills
    lexicon.py           the phrasing grammar's words: situations, verbs, sentence frames, by split side
    grammar.py           problems written by that grammar; splits_with_grammar: templates + grammar +
                         the template-held-out ("unseen") set
"""

from r1kit.data.synth.core import OPERATIONS, steps_range, synth, synth_splits
from r1kit.data.synth.drills import drills
from r1kit.data.synth.templates import TEMPLATES, Template

__all__ = ["OPERATIONS", "TEMPLATES", "Template", "drills", "steps_range", "synth", "synth_splits"]
