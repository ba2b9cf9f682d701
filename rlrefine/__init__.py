"""rlrefine: distill and RL-refine LLM question decomposers (Divide-or-Conquer, arXiv 2402.15000)."""

__version__ = "0.1.0"
