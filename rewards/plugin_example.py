"""An example reward plugin: a complete file to copy. Name it in a config as

    rewards:
      - {name: solver, weight: 1.0}
      - {name: rewards/plugin_example.py:novelty, weight: 0.1, penalty: 1.0}

A reward is any function with TRL's signature; dataset columns (here ``question``) arrive as keyword lists,
one entry per completion. Return one float per completion, or None to skip that sample. Settings from the config
(``penalty``) go to the function's own keyword parameters.
"""

from rlrefine.core.format import completion_text, parse


def novelty(prompts, completions, completion_ids=None, question=None, penalty: float = 1.0, **kwargs):
    """Penalise sub-questions that repeat each other or the question itself: each is a wasted solver call.

    >>> novelty(None, ["Q1: How many cards does Pia have ?", "Q1: How many cards does Ada have ?"],
    ...         question=["How many cards does Ada have ?"] * 2)
    [0.0, -1.0]
    """
    questions = question or [""] * len(completions)
    scores = []
    for completion, asked in zip(completions, questions):
        subs = parse(completion_text(completion)).subquestions
        wasted = len(subs) - len(set(subs) - {asked.strip()})
        scores.append(-penalty * wasted if wasted else 0.0)
    return scores
