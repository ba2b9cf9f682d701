"""PPO with a learned critic: GAE by hand, updates that move policy and critic, a critic that fits its returns, a
KL penalty that is zero for the reference itself, LoRA, and kill-and-resume with the critic restored."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlrefine.training.ppo import (
    PPOConfig,
    PPOTrainer,
    clipped_value_loss,
    gae,
    sequence_rewards,
    token_rewards,
    whiten,
)

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
    assert white[mask.bool()].std().item() == pytest.approx(1.0, abs=1e-5)  # divided by the std, not only centred


def test_token_rewards_put_the_sequence_reward_on_the_last_real_token_and_charge_the_kl():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    kl = torch.tensor([[0.5, -0.5, 1.0, 9.0], [2.0, 0.0, 9.0, 9.0]])  # policy minus reference log-probabilities
    rewards = token_rewards(torch.tensor([1.0, float("nan")]), mask, kl, kl_coef=0.1)
    # row 0: -0.1 * kl on real tokens, +1 at token 2 (not at the padding after it); row 1: unscored, only the KL
    expected = torch.tensor([[-0.05, 0.05, 1.0 - 0.1, 0.0], [-0.2, 0.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)


@pytest.mark.parametrize(
    "value, expected_loss, expected_clipped",
    [  # rollout value 0, return 3, clip 0.5: the loss is half the larger squared error, new value or clipped one
        (2.0, 0.5 * (0.5 - 3.0) ** 2, 1.0),  # past the clip: the clipped value (0.5) is further from the return
        (5.0, 0.5 * (0.5 - 3.0) ** 2, 1.0),  # past the return too: still the clipped one (6.25 > 4)
        (-1.0, 0.5 * (-1.0 - 3.0) ** 2, 1.0),  # moved away: the new value's error (16 > 12.25)
        (0.25, 0.5 * (0.25 - 3.0) ** 2, 0.0),  # within the clip: both the same
    ],
)
def test_value_loss_takes_the_larger_error_where_the_clip_binds(value, expected_loss, expected_clipped):
    old, returns, mask = torch.tensor([[0.0]]), torch.tensor([[3.0]]), torch.tensor([[1.0]])
    loss, clipped = clipped_value_loss(torch.tensor([[value]]), old, returns, mask, clip=0.5)
    assert loss.item() == pytest.approx(expected_loss) and clipped.item() == expected_clipped


def test_each_process_scores_its_own_completions_with_the_reward_weights():
    per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [float("nan"), 1.0], [float("nan"), float("nan")]])
    weights = torch.tensor([2.0, 0.5])
    assert sequence_rewards(per_func, weights, 0, 2).tolist() == [2.0, 0.5]
    assert sequence_rewards(per_func, weights, 1, 2)[0].item() == 0.5  # the skipped reward adds nothing
    assert torch.isnan(sequence_rewards(per_func, weights, 1, 2)[1])  # every reward skipped it: no signal


def _trainer(decomposer: Path, out: Path, **settings) -> PPOTrainer:
    from transformers import AutoModelForCausalLM

    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.rl import build_rewards, train_dataset
    from rlrefine.training.settings import PipelineArgs, defaults_for

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
    from safetensors.torch import load_file

    saved = load_file(checkpoint / "critic" / "model.safetensors")
    from transformers import TrainerCallback

    trainer = _trainer(tiny_decomposer, tmp_path / "probe", max_steps=8)
    assert not all(torch.equal(saved[k], v) for k, v in trainer.critic.state_dict().items())  # a fresh critic differs
    seen = {}

    class AtStart(TrainerCallback):  # the trainer has loaded the checkpoint, and not trained yet
        def on_train_begin(self, args, state, control, **kwargs):
            seen.update({k: v.clone() for k, v in trainer.critic.state_dict().items()})
            control.should_training_stop = True

    trainer.add_callback(AtStart())
    trainer.train(resume_from_checkpoint=str(checkpoint))  # TRL's own resume path, as --resume takes it
    assert seen.keys() == saved.keys() and all(torch.equal(saved[k], v) for k, v in seen.items())  # the critic is back
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)  # the same settings, continued
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["resumed_from"].endswith(checkpoint.name) and facts["steps"] == 8


def _bare_trainer(model_dir: Path, out: Path, dtype: str = "float32", peft_config=None, **settings) -> PPOTrainer:
    """A PPO trainer on the untrained tiny model (fast tier): what the critic is built as, not what it learns."""
    from transformers import AutoModelForCausalLM

    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.rl import build_rewards, train_dataset
    from rlrefine.training.settings import PipelineArgs, defaults_for

    tokenizer = load_tokenizer(model_dir)
    funcs, weights = build_rewards([{"name": "solver"}], "hops=1", tokenizer)
    config = {**defaults_for("ppo"), "output_dir": str(out), "per_device_train_batch_size": 8, "num_generations": 4}
    config.update(max_completion_length=8, logging_steps=1, save_strategy="no", reward_weights=weights, **settings)
    return PPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype),
        reward_funcs=funcs,
        args=PPOConfig(**config),
        train_dataset=train_dataset(PipelineArgs(data="world:small", train_limit=8)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def test_the_critic_is_trained_as_the_policy_is(tiny_model_dir, tmp_path):
    """A separate critic takes the policy's dtype, LoRA adapters of the policy's settings (its score head trained whole,
    the backbone frozen: not a second full fine-tuning beside a LoRA policy) and activation checkpointing; one step
    moves exactly the adapters and the head."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _bare_trainer(
        tiny_model_dir,
        tmp_path / "ppo",
        "bfloat16",
        lora,
        max_steps=1,
        learning_rate=1e-2,
        warmup_steps=0,
        activation_checkpointing=True,
    )
    critic = trainer.accelerator.unwrap_model(trainer.critic)
    trainable = {n for n, p in critic.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable), trainable
    assert any(".score." in n for n in trainable) and any("lora_B" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in critic.named_parameters() if not p.requires_grad}
    assert {p.dtype for n, p in frozen.items()} == {torch.bfloat16}  # the backbone as the policy's
    assert critic.base_model.model.is_activation_checkpointing
    before = {n: p.detach().clone() for n, p in critic.named_parameters() if n in trainable}
    trainer.train()
    assert all(torch.equal(p, frozen[n]) for n, p in critic.named_parameters() if n in frozen)
    moved = {n for n, p in critic.named_parameters() if n in before and not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in moved) and any(".score." in n for n in moved), moved


def test_the_critic_reads_a_generation_batch_in_chunks_with_the_same_values(tiny_model_dir, tmp_path):
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (7, 12))
    mask = torch.ones_like(ids)
    mask[2, :4] = 0  # left padding, as generation pads prompts
    mask[5, :7] = 0
    whole = trainer._values(ids, mask, length=5)
    assert whole.shape == (7, 5)
    for chunk in (1, 3, 7, 8):
        assert torch.allclose(trainer._values(ids, mask, length=5, chunk=chunk), whole, atol=1e-5)
