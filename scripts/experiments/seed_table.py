"""The seed article's comparison table, restated in our own words, beside the measured one.

Source: the seed article on exponential decay, cyclic exponential decay (CED) and 1-cycle
(``shared/seed``). Its table has the columns method, purpose, formula, strengths, platforms and
"how to decide which to use"; the 1-cycle row is cut off in the source after "balances
exploration and refinement", so its last cells are completed from the article's conclusion.
"""

from __future__ import annotations

__all__ = ["SEED_ROWS", "seed_table_markdown"]

SEED_ROWS = [
    {
        "method": "Exponential decay",
        "purpose": "Shrink the step size steadily so training settles into a minimum.",
        "strengths": "One knob (the decay rate); big steps early, ever finer steps later.",
        "when": "Stable, smaller models that want a smooth, gradual cool-down; fine-tuning.",
    },
    {
        "method": "Cyclic exponential decay (CED)",
        "purpose": "Decay as above, with periodic swells of the rate to leave local minima.",
        "strengths": "Each cycle re-explores the loss surface while the envelope still decays.",
        "when": "Non-convex, rugged loss surfaces and larger models prone to poor minima.",
    },
    {
        "method": "1-cycle",
        "purpose": "One rise to a peak rate, then a long fall: explore first, refine last.",
        "strengths": "Balances exploration and refinement; fast convergence "
                     "(the source row is cut off here).",
        "when": "Large datasets and complex models, when training time is limited "
                "(from the article's conclusion).",
    },
]


def seed_table_markdown() -> str:
    """The seed's comparison as a Markdown table.

    Example:
        >>> seed_table_markdown().splitlines()[0]
        '| method (seed) | purpose | strengths | when to use, per the seed |'
    """
    lines = ["| method (seed) | purpose | strengths | when to use, per the seed |",
             "|---|---|---|---|"]
    for row in SEED_ROWS:
        lines.append(f"| {row['method']} | {row['purpose']} | {row['strengths']} | "
                     f"{row['when']} |")
    return "\n".join(lines)
