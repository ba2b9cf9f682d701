"""An algorithm in one file: GRPO's trainer under another name with its own defaults."""

from trl import GRPOConfig, GRPOTrainer

from rlrefine.training.algorithms import Algorithm

GRPO_SHORT = Algorithm(GRPOConfig, GRPOTrainer, {"max_completion_length": 24, "num_generations": 4})
