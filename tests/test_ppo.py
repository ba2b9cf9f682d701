"""PPO with a learned critic: GAE by hand, updates that move policy and critic, a critic that fits its returns, a
KL penalty that is zero for the reference itself, LoRA, and kill-and-resume with the critic restored."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlrefine.ppo import PPOConfig, PPOTrainer, gae, whiten

ROOT = Path(__file__).resolve().parents[1]


def test_gae_and_returns_by_hand():
    """Two completions: three tokens, and two then padding. gamma 0.9, lambda 0.8, reward at the last real token."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.4, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: d2 = 1 - 0.3 = 0.7; d1 = 0.9*0.3 - 0.2 = 0.07; d0 = 0.9*0.2 - 0.1 = 0.08
    #        A2 = 0.7; A1 = 0.07 + 0.72*0.7 = 0.574; A0 = 0.08 + 0.72*0.574 = 0.49328
    # row 1: the episode ends at token 1 (the value 7.0 behind it is never used): d1 = 2 - 0.4 = 1.6;
    #        d0 = 0.9*0.4 - 0.5 = -0.14; A1 = 1.6; A0 = -0.14 + 0.72*1.6 = 1.012
    assert torch.allclose(advantages, torch.tensor([[0.49328, 0.574, 0.7], [1.012, 1.6, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[0.59328, 0.774, 1.0], [1.512, 2.0, 0.0]]))
    white = whiten(advantages, mask)
    assert white[mask.bool()].mean().item() == pytest.approx(0.0, abs=1e-6) and white[1, 2] == 0.0


def _trainer(decomposer: Path, out: Path, **settings) -> PPOTrainer:
    from transformers import AutoModelForCausalLM

    from rlrefine.config import PipelineArgs, defaults_for
    from rlrefine.models import load_tokenizer
    from rlrefine.rl import build_rewards, train_dataset

    tokenizer = load_tokenizer(decomposer)
    funcs, weights = build_rewards([{"name": "solver"}, {"name": "token_cost", "per_token": 0.01}], "hops=1", tokenizer)
    config = {**defaults_for("ppo"), "output_dir": str(out), "per_device_train_batch_size": 8, "num_generations": 4}
    config.update(
        max_completion_length=24, learning_rate=1e-3, logging_steps=1, save_strategy="no", reward_weights=weights
    )
    return PPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(decomposer, dtype="float32"),
        reward_funcs=funcs,
        args=PPOConfig(**{**config, **settings}),
        train_dataset=train_dataset(PipelineArgs(data="world:small", train_limit=16)),
        processing_class=tokenizer,
    )


def _params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _moved(before, module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_updates_move_policy_and_critic(tiny_decomposer, tmp_path):
    trainer = _trainer(tiny_decomposer, tmp_path / "ppo", max_steps=3)
    policy, critic = _params(trainer.model), _params(trainer.critic)
    trainer.train()
    assert _moved(policy, trainer.model) and _moved(critic, trainer.critic)
    logged = [h for h in trainer.state.log_history if "value_loss" in h]
    assert len(logged) == 3 and all("value/explained_variance" in h and "clip_ratio/region_mean" in h for h in logged)


def test_a_shared_critic_is_a_value_head_on_the_policy(tiny_decomposer, tmp_path):
    trainer = _trainer(tiny_decomposer, tmp_path / "ppo", max_steps=2, critic="shared")
    assert [n for n, _ in trainer.critic.named_parameters()] == [
        "head.weight",
        "head.bias",
    ]  # the trunk is the policy's
    policy, head = _params(trainer.model), _params(trainer.critic)
    trainer.train()
    assert _moved(policy, trainer.model) and _moved(head, trainer.critic)
    with pytest.raises(ValueError, match="critic must be 'separate' or 'shared'"):
        PPOConfig(output_dir=str(tmp_path), critic="both")


def test_the_critic_fits_a_fixed_batch_of_rollouts(tiny_decomposer, tmp_path):
    """One batch of rollouts reused for 12 epochs while the policy waits (critic warm-up): the value loss falls.
    (Unclipped here: value clipping keeps each epoch near the rollout's values, by design.)"""
    settings = {"critic_learning_rate": 1e-4, "cliprange_value": 100.0, "warmup_steps": 0}
    trainer = _trainer(
        tiny_decomposer, tmp_path / "ppo", max_steps=12, num_iterations=12, critic_warmup_steps=12, **settings
    )
    policy = _params(trainer.model)
    trainer.train()
    losses = [h["value_loss"] for h in trainer.state.log_history if "value_loss" in h]
    assert len(losses) == 12 and max(losses[-3:]) < 0.6 * losses[0]
    assert not _moved(policy, trainer.model)  # warm-up: only the critic learned


def test_kl_penalty_is_zero_while_the_policy_is_its_reference(tiny_decomposer, tmp_path):
    trainer = _trainer(tiny_decomposer, tmp_path / "ppo", max_steps=3, kl_coef=0.1, learning_rate=5e-3)
    trainer.train()
    kl = [h["ppo/kl"] for h in trainer.state.log_history if "ppo/kl" in h]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] != pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="set kl_coef, not beta"):
        PPOConfig(output_dir=str(tmp_path), beta=0.1)


@pytest.mark.slow
def test_lora_policy_through_the_pipeline(tiny_decomposer, tmp_path):
    from rlrefine.train import main

    run = tmp_path / "run"
    tiny = "--data world:small --train_limit 16 --eval_limit 8 --eval_solvers hops=1 --pass_k 2 --logging_steps 1"
    tiny += " --per_device_train_batch_size 8 --num_generations 4 --max_completion_length 24 --max_steps 2"
    main(
        [*tiny.split(), "--algorithm", "ppo", "--decomposer", str(tiny_decomposer), "--run_dir", str(run)]
        + ["--use_peft", "--lora_r", "4", "--lora_target_modules", "all-linear"]
    )
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 2 and not list((run / "rl").glob("adapter_*"))  # merged: a plain model folder


@pytest.mark.slow
def test_killed_ppo_resumes_with_its_critic(tiny_decomposer, tmp_path, kill_at_checkpoint):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "rlrefine" / "train.py"), "--algorithm", "ppo", "--decomposer"]
    cmd += [str(tiny_decomposer), "--run_dir", str(run), "--save_steps", "2", "--data", "world:small"]
    cmd += "--train_limit 32 --eval_limit 8 --eval_solvers hops=1 --pass_k 2 --per_device_train_batch_size 8".split()
    cmd += "--num_generations 4 --max_completion_length 24 --learning_rate 1e-3".split()
    cmd += ["--max_steps", "8"]
    checkpoint = kill_at_checkpoint(cmd, run / "rl.work")
    assert (checkpoint / "critic" / "model.safetensors").is_file()
    trainer = _trainer(tiny_decomposer, tmp_path / "probe", max_steps=1)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    trainer._load_optimizer_and_scheduler(str(checkpoint))
    from safetensors.torch import load_file

    saved = load_file(checkpoint / "critic" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in trainer.critic.state_dict().items() if k in saved)
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)  # the same settings, continued
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["resumed_from"].endswith(checkpoint.name) and facts["steps"] == 8
