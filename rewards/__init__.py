"""Reward plugins for RL refinement of decomposers, each with TRL's reward signature."""
