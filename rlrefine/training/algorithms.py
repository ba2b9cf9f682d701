"""The RL algorithms, each one object the registry names (``--algorithm grpo``; a plugin is ``file.py:attr``,
``package.module:attr`` or an entry point in ``rlrefine.training.algorithms``): TRL's config class, the trainer that takes
TRL's ``(model, reward_funcs, args, train_dataset, processing_class, peft_config, callbacks)``, and our defaults
over TRL's. Adding an algorithm is one object here or in a plugin file."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from rlrefine.training.dialogue import DialogueRLOOTrainer
from rlrefine.training.ppo import PPOConfig, PPOTrainer
from rlrefine.training.rft import RFTConfig
from rlrefine.training.trainers import TRAINER_DEFAULTS

# TRL settings that suit the tiny world policy on a CPU; a config file or flags override any of them.
RL_DEFAULTS = {
    "learning_rate": 1e-4,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 10,
    "max_steps": 300,
    "per_device_train_batch_size": 32,
    "num_generations": 8,
    "max_completion_length": 48,
    "temperature": 1.0,
    "beta": 0.0,
    "logging_steps": 10,
    "save_steps": 50,
    "seed": 0,
}


@dataclass(frozen=True)
class Algorithm:
    config: type  # TRL's config class, holding the algorithm's own settings too (PPO's critic, RFT's rounds)
    trainer: type | None  # None: rejection-sampling fine-tuning, rounds of TRL's SFTTrainer (rlrefine.training.rft)
    defaults: dict = field(default_factory=dict)  # over the shared defaults above that its config has fields for
    dialogue: type | None = None  # its trainer with --rollout dynamic: one that takes TRL's rollout_func and env_mask

    def trl_defaults(self) -> dict:
        """Our defaults over TRL's for this algorithm: the shared ones its config has fields for (RFT's rounds are
        SFT: no generation settings), then its own."""
        shared = {**RL_DEFAULTS, **TRAINER_DEFAULTS}
        return {**{k: v for k, v in shared.items() if k in self.config.__dataclass_fields__}, **self.defaults}


GRPO = Algorithm(GRPOConfig, GRPOTrainer, dialogue=GRPOTrainer)
RLOO = Algorithm(RLOOConfig, RLOOTrainer, dialogue=DialogueRLOOTrainer)
# GAE lambda 1 (returns minus the critic's value) and no KL in the reward: the best of the settings README's PPO
# section measured
PPO = Algorithm(PPOConfig, PPOTrainer, {"lam": 1.0, "kl_coef": 0.0})
# RFT samples up to 64 tokens (the student's decoding length), the length its README rows were measured with: set
# max_completion_length to the RL algorithms' for a comparison under the same limits
RFT = Algorithm(
    RFTConfig, None, {"learning_rate": 5e-4, "max_steps": 200, "max_length": 256, "max_completion_length": 64}
)
