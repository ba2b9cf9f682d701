"""The RL algorithms, each one object the registry names (``--algorithm grpo``; a plugin is ``file.py:attr``,
``package.module:attr`` or an entry point in ``rlrefine.training.algorithms``): TRL's config class, the trainer that takes
TRL's ``(model, reward_funcs, args, train_dataset, processing_class, peft_config, callbacks)``, and our defaults
over TRL's. Adding an algorithm is one object here or in a plugin file."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer, SFTConfig

from rlrefine.training.ppo import PPOConfig, PPOTrainer


@dataclass(frozen=True)
class Algorithm:
    config: type
    trainer: type | None  # None: rejection-sampling fine-tuning, rounds of TRL's SFTTrainer (rlrefine.training.rft)
    defaults: dict = field(default_factory=dict)  # over the shared RL defaults (config.RL_DEFAULTS) it has fields for


GRPO = Algorithm(GRPOConfig, GRPOTrainer)
RLOO = Algorithm(RLOOConfig, RLOOTrainer)
# GAE lambda 1 (returns minus the critic's value) and no KL in the reward: the best of the settings README's PPO
# section measured
PPO = Algorithm(PPOConfig, PPOTrainer, {"lam": 1.0, "kl_coef": 0.0})
RFT = Algorithm(SFTConfig, None, {"learning_rate": 5e-4, "max_steps": 200, "max_length": 256})
