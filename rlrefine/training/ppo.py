"""PPO with a learned critic for the decomposer, built on TRL's GRPO trainer.

TRL 1.16 has no PPOTrainer (removed in 1.13; the last one took a reward *model*, not reward functions). Ours subclasses
``GRPOTrainer`` and keeps everything of it: generation (plain or vLLM), reward functions (sync or async, ``None`` skips
a sample), the clipped policy loss, several epochs over each batch of rollouts (``num_iterations``), logging,
accelerate and PEFT. What PPO changes is ours:

- the critic: a separate value model (a token-classification head on a copy of the policy's backbone, initialised
  from the start decomposer or from ``critic_model``, in the policy's dtype, with LoRA and activation checkpointing
  when the policy has them), or with ``critic: shared`` a value head on the policy's own
  backbone; trained with a clipped value loss beside the policy, in the same optimizer (its own learning rate),
  checkpointed with the run and restored by ``--resume``;
- the advantages: GAE(gamma, lambda) over the critic's per-token values, with the sequence reward at the last token and
  an optional per-token KL penalty to the reference policy in the reward (classic RLHF PPO), whitened per batch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForTokenClassification
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import disable_dropout_in_model

from rlrefine.core.protocols import UsageError

CRITIC = "critic"  # the critic's folder inside a checkpoint


@dataclass
class PPOConfig(GRPOConfig):
    """TRL's GRPOConfig plus the critic's settings (``num_iterations`` is the number of PPO epochs per rollout)."""

    critic: str = field(
        default="separate",
        metadata={"help": "separate: its own model; shared: a value head on the policy's backbone (one process)"},
    )
    critic_model: str | None = field(
        default=None, metadata={"help": "separate critic: the folder it starts from (default: RL's start decomposer)"}
    )
    critic_learning_rate: float | None = field(default=None, metadata={"help": "default: the policy's"})
    critic_warmup_steps: int = field(default=0, metadata={"help": "first steps train only the critic"})
    vf_coef: float = field(default=0.5, metadata={"help": "weight of the value loss"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value updates clipped to this range"})
    gamma: float = field(default=1.0, metadata={"help": "GAE discount"})
    lam: float = field(default=1.0, metadata={"help": "GAE lambda (1: returns minus the critic's value)"})
    kl_coef: float = field(
        default=0.0, metadata={"help": "per-token KL penalty to the reference policy, in the reward (0: none)"}
    )
    whiten_advantages: bool = field(default=True, metadata={"help": "normalise advantages per batch"})

    def __post_init__(self) -> None:
        if self.beta:
            raise UsageError("PPO puts the KL to the reference policy in the reward: set kl_coef, not beta")
        if self.critic not in ("separate", "shared"):
            raise UsageError(f"critic must be 'separate' or 'shared', got {self.critic!r}")
        super().__post_init__()


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns by generalised advantage estimation over per-token rewards and values (B, T); a
    position with ``mask`` 0 is past the end of its completion: the episode ends at its last real token.

    >>> a, r = gae(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.5, 9.0]]), torch.tensor([[1, 1, 0]]), 1.0, 1.0)
    >>> a.tolist(), r.tolist()
    ([[0.5, 0.5, 0.0]], [[1.0, 1.0, 0.0]])
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.size(1))):
        going_on = mask[:, t + 1] if t + 1 < values.size(1) else torch.zeros_like(running)
        next_value = values[:, t + 1] * going_on if t + 1 < values.size(1) else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * going_on * running
        advantages[:, t] = running
    done = mask == 0
    return advantages.masked_fill(done, 0.0), (advantages + values).masked_fill(done, 0.0)


def sequence_rewards(per_func: torch.Tensor, weights: torch.Tensor, process_index: int, n: int) -> torch.Tensor:
    """This process's share of the weighted sequence rewards: TRL gathers every process's rewards (rows, one column
    per reward function); a reward that skipped a completion (NaN) adds nothing, and one every reward skipped is NaN.

    >>> per_func = torch.tensor([[1.0, 2.0], [float("nan"), 4.0], [float("nan"), float("nan")], [0.0, 1.0]])
    >>> sequence_rewards(per_func, torch.tensor([1.0, 0.5]), process_index=0, n=2).tolist()
    [2.0, 2.0]
    >>> sequence_rewards(per_func, torch.tensor([1.0, 0.5]), process_index=1, n=2).tolist()
    [nan, 0.5]
    """
    weighted = (per_func * weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
    weighted[torch.isnan(per_func).all(dim=1)] = torch.nan  # every reward skipped it: no signal
    return weighted[process_index * n : (process_index + 1) * n]


def token_rewards(
    sequence: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None, kl_coef: float = 0.0
) -> torch.Tensor:
    """Per-token rewards (B, T): each completion's sequence reward (NaN: unscored, 0) at its last real token, minus
    ``kl_coef`` times the per-token KL to the reference (policy minus reference log-probability) on real tokens.

    >>> token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1, 1], [1, 0, 0]])).tolist()
    [[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]]
    """
    mask = mask.to(torch.float32)
    rewards = torch.zeros_like(mask) if kl is None else -kl_coef * kl.to(mask.dtype) * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=last.device), last] += torch.nan_to_num(sequence, nan=0.0).to(mask.dtype)
    return rewards


def clipped_value_loss(
    values: torch.Tensor, old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's value loss: half the larger of the squared errors of the new values and of the values clipped to within
    ``clip`` of the rollout's, averaged over real tokens; and the share of tokens whose value moved past the clip.

    >>> loss, clipped = clipped_value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[3.0]]),
    ...                                    torch.tensor([[1.0]]), clip=0.5)
    >>> loss.item(), clipped.item()  # clipped to 0.5: 0.5 * (3 - 0.5)**2, not 0.5 * (3 - 2)**2
    (3.125, 1.0)
    """
    moved = old + (values - old).clamp(-clip, clip)
    per_token = 0.5 * torch.max((values - returns) ** 2, (moved - returns) ** 2)
    count = mask.sum().clamp(min=1.0)
    return (per_token * mask).sum() / count, (((values - old).abs() > clip).float() * mask).sum() / count


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages to mean 0 and standard deviation 1 over the real tokens; padding stays 0.

    >>> whiten(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[1, 1, 0]])).tolist()
    [[-0.7071067690849304, 0.7071067690849304, 0.0]]
    """
    valid = values[mask.bool()]
    if valid.numel() < 2:
        return values * mask
    return (values - valid.mean()) / (valid.std() + 1e-8) * mask


class ValueHead(nn.Module):
    """A value head on the policy's own backbone: one trunk for actor and critic, the value loss shaping it too. The
    policy is reached through a function, so its weights stay the policy's (saved, counted and optimised once)."""

    def __init__(self, policy, hidden: int) -> None:
        super().__init__()
        self.policy, self.head = policy, nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.policy().get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SimpleNamespace(logits=self.head(hidden.to(self.head.weight.dtype)))


class PPOTrainer(GRPOTrainer):
    """GRPO's trainer with a critic: see the module docstring for what is TRL's and what is ours."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.args.critic == "shared":
            if self.accelerator.num_processes > 1:  # DDP cannot see a second forward through the policy's weights
                raise UsageError("critic: shared runs in one process; use critic: separate with several processes")
            hidden = self.accelerator.unwrap_model(self.model).config.hidden_size
            self.critic = ValueHead(lambda: self.accelerator.unwrap_model(self.model), hidden).to(self.model.device)
        else:  # its own DDP wrapper with several processes
            self.critic = self.accelerator.prepare_model(self._separate_critic(kwargs.get("peft_config")))
        self._sequence_rewards: torch.Tensor | None = None
        if self.args.kl_coef and self.ref_model is None and not hasattr(self.model, "disable_adapter"):
            from trl.models import create_reference_model

            self.ref_model = self.accelerator.prepare_model(create_reference_model(self.model), evaluation_mode=True)

    def _separate_critic(self, peft_config) -> nn.Module:
        """The critic trained as the policy is: in its dtype, with LoRA adapters of the same settings when the policy
        has them (the value head trained whole), with activation checkpointing when the policy uses it."""
        policy = self.accelerator.unwrap_model(self.model)
        start = self.args.critic_model or policy.config._name_or_path
        critic = AutoModelForTokenClassification.from_pretrained(start, num_labels=1, dtype=policy.dtype)
        critic.config.pad_token_id = self.processing_class.pad_token_id
        disable_dropout_in_model(critic)  # the classification head's dropout would make the values noisy targets
        checkpointing = (
            self.args.activation_checkpointing
        )  # transformers' own keys in its kwargs, as Trainer reads them
        if checkpointing:
            kwargs = dict(self.args.activation_checkpointing_kwargs or {})
            every, offload = kwargs.pop("every_n_layers", 1), kwargs.pop("offload", False)
            critic.activation_checkpointing_enable(kwargs or None, every_n_layers=every, offload=offload)
        if peft_config is not None:
            from peft import get_peft_model

            if checkpointing:
                critic.enable_input_require_grads()  # frozen embeddings: the checkpointed blocks still get gradients
            # the policy's modules_to_save (an lm_head) are not the critic's: PEFT keeps its score head trainable
            critic = get_peft_model(
                critic, dataclasses.replace(peft_config, task_type="TOKEN_CLS", modules_to_save=None)
            )
        return critic

    # -- the critic trains in the trainer's optimizer, and is saved and restored with its checkpoints --------------

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        params = [p for p in self.critic.parameters() if p.requires_grad]
        if not any(p is q for group in optimizer.param_groups for p in group["params"] for q in params[:1]):
            lr = self.args.critic_learning_rate or self.args.learning_rate
            optimizer.add_param_group({"params": params, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def _save_checkpoint(self, model, trial):
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save:  # before the trainer's files: trainer_state.json last marks a complete checkpoint
            os.makedirs(os.path.join(folder, CRITIC), exist_ok=True)
            weights = {k: v.contiguous() for k, v in self.accelerator.unwrap_model(self.critic).state_dict().items()}
            save_file(weights, os.path.join(folder, CRITIC, "model.safetensors"))  # a shared critic: its head only
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None:
            weights = load_file(os.path.join(checkpoint, CRITIC, "model.safetensors"))
            self.accelerator.unwrap_model(self.critic).load_state_dict(weights)
        super()._load_optimizer_and_scheduler(checkpoint)

    # -- rollouts: per-token values, rewards and GAE advantages ----------------------------------------------------

    def _values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int, chunk: int = 0
    ) -> torch.Tensor:
        """V(s_t) for each completion token t: the critic's output at the position before it; ``chunk`` rows at a time
        (a whole generation batch at once would hold every row's activations)."""
        chunk = chunk or len(input_ids)
        out = [
            self.critic(input_ids=input_ids[i : i + chunk], attention_mask=attention_mask[i : i + chunk]).logits[..., 0]
            for i in range(0, len(input_ids), chunk)
        ]
        return torch.cat(out)[:, -length - 1 : -1].float()

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._sequence_rewards = sequence_rewards(
            per_func, self.reward_weights, self.accelerator.process_index, len(prompts)
        )
        return per_func

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return out
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        mask, length = out["completion_mask"].float(), out["completion_ids"].size(1)
        scored = ~torch.isnan(self._sequence_rewards)
        with torch.no_grad():
            values = self._values(ids, attention, length, chunk=self.args.per_device_train_batch_size)
            kl = None
            if self.args.kl_coef:
                kl = self._policy_logps(out, ids, attention, length) - self._reference_logps(ids, attention, length)
                self._metrics["train"]["ppo/kl"].append(self.accelerator.gather((kl * mask).sum(1)).mean().item())
            rewards = token_rewards(self._sequence_rewards, mask, kl, self.args.kl_coef).to(values.dtype)
            advantages, returns = gae(rewards, values, mask, self.args.gamma, self.args.lam)
        value_mask = mask * scored.unsqueeze(1)
        advantages = advantages * value_mask  # an unscorable completion moves nothing
        if self.args.whiten_advantages:
            advantages = whiten(advantages, value_mask)
        out.update(advantages=advantages, returns=returns, old_values=values, value_mask=value_mask)
        return out

    def _policy_logps(self, out, ids, attention, length) -> torch.Tensor:
        if "old_per_token_logps" in out:
            return out["old_per_token_logps"]
        return self._get_per_token_logps_and_entropies(self.model, ids, attention, length)[0]

    def _reference_logps(self, ids, attention, length) -> torch.Tensor:
        if self.ref_model is not None:
            return self._get_per_token_logps_and_entropies(self.ref_model, ids, attention, length)[0]
        with self.accelerator.unwrap_model(self.model).disable_adapter():  # LoRA: the base model is the reference
            return self._get_per_token_logps_and_entropies(self.model, ids, attention, length)[0]

    # -- the loss: TRL's clipped policy loss on our advantages, plus the clipped value loss ------------------------

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        if "returns" not in inputs:  # evaluation batches carry no rollouts of ours
            return loss
        if self.state.global_step < self.args.critic_warmup_steps:
            loss = loss * 0.0  # the critic learns the values first; the policy waits
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        values = self._values(ids, attention, inputs["completion_ids"].size(1))
        old, returns, mask = inputs["old_values"], inputs["returns"], inputs["value_mask"]
        value_loss, clipfrac = clipped_value_loss(values, old, returns, mask, self.args.cliprange_value)
        metrics = self._metrics["train"]
        metrics["value_loss"].append(self.accelerator.gather(value_loss.detach()).mean().item())
        metrics["value/clipfrac"].append(self.accelerator.gather(clipfrac.detach()).mean().item())
        residual = (returns - old)[mask.bool()]
        target = returns[mask.bool()]
        if target.numel() > 1:
            explained = 1 - residual.var() / target.var().clamp(min=1e-8)
            metrics["value/explained_variance"].append(self.accelerator.gather(explained.detach()).mean().item())
        return loss + self.args.vf_coef * value_loss / self.current_gradient_accumulation_steps
