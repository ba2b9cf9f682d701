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
    return PPOTrainer(  # model and reward functions positional, as TRL's signature orders them
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype),
        funcs,
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


# -- the pieces by hand (fast tier): the functions at their edges, the trainer's methods on a stand-in critic ---------


def test_config_refuses_a_beta_and_an_unknown_critic(tmp_path):
    plain = {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False}
    with pytest.raises(
        ValueError, match=r"^PPO puts the KL to the reference policy in the reward: set kl_coef, not beta$"
    ):
        PPOConfig(**plain, beta=0.1)
    with pytest.raises(ValueError, match=r"^critic must be 'separate' or 'shared', got 'both'$"):
        PPOConfig(**plain, critic="both")
    for critic in ("separate", "shared"):
        assert PPOConfig(**plain, critic=critic, beta=0.0).critic == critic


def test_gae_discounts_by_gamma_and_lambda_separately():
    """One completion of three tokens, reward 1 at the end, values 0: with lambda 1 the advantage is the discounted
    return gamma**(2-t); with gamma 1 and lambda 0 it is the one-step error r_t + V_{t+1} - V_t."""
    rewards, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[1, 1, 1]])
    advantages, returns = gae(rewards, torch.zeros(1, 3), mask, gamma=0.5, lam=1.0)
    assert advantages.tolist() == [[0.25, 0.5, 1.0]] and returns.tolist() == [[0.25, 0.5, 1.0]]
    values = torch.tensor([[0.5, 2.0, 0.25]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.0)
    assert advantages.tolist() == [[1.5, -1.75, 0.75]] and returns.tolist() == [[2.0, 0.25, 1.0]]


def test_token_rewards_of_an_empty_completion_and_without_kl():
    """No real token: the reward goes to position 0 (not the last padding); no KL given: no charge, whatever the
    coefficient; integer masks give float rewards."""
    rewards = token_rewards(torch.tensor([3.0, 1.0]), torch.tensor([[0, 0, 0], [1, 1, 0]]), kl=None, kl_coef=0.5)
    assert rewards.dtype == torch.float32 and rewards.tolist() == [[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_value_loss_and_clip_share_average_over_real_tokens_only():
    """Two tokens, the second padding (its error 100 and its move past the clip count for nothing); all padding:
    0, not NaN."""
    values, old = torch.tensor([[1.0, 10.0]]), torch.tensor([[0.0, 0.0]])
    returns, mask = torch.tensor([[2.0, -10.0]]), torch.tensor([[1.0, 0.0]])
    loss, clipped = clipped_value_loss(values, old, returns, mask, clip=2.0)
    assert loss.item() == 0.5 and clipped.item() == 0.0  # 0.5 * (1 - 2)**2 over one token; moved 1 <= 2
    loss, clipped = clipped_value_loss(values, old, returns, torch.zeros(1, 2), clip=2.0)
    assert loss.item() == 0.0 and clipped.item() == 0.0
    _, clipped = clipped_value_loss(torch.tensor([[2.5, -2.5, 2.0]]), torch.zeros(1, 3), torch.zeros(1, 3),
                                    torch.ones(1, 3), clip=2.0)  # fmt: skip
    assert clipped.item() == pytest.approx(2 / 3)  # both directions count; exactly the clip does not


def test_whiten_leaves_a_single_token_unscaled_and_equal_advantages_at_zero():
    assert whiten(torch.tensor([[4.0, 7.0]]), torch.tensor([[1, 0]])).tolist() == [[4.0, 0.0]]  # no std of one
    assert whiten(torch.tensor([[2.0, 2.0, 5.0]]), torch.tensor([[1, 1, 0]])).tolist() == [[0.0, 0.0, 0.0]]
    white = whiten(torch.tensor([[1.0, 2.0, 6.0]]), torch.tensor([[1, 1, 1]]))  # mean 3, sample std sqrt(7)
    assert torch.allclose(white, torch.tensor([[-2.0, -1.0, 3.0]]) / 7**0.5)


class _TokenValues(torch.nn.Module):
    """A stand-in critic: its value at a position is 0.1 x the token id there (0 where the attention mask is 0); it
    records how many rows each call reads."""

    def __init__(self, dtype=torch.float32) -> None:
        super().__init__()
        self.scale, self.dtype, self.calls = torch.nn.Parameter(torch.tensor(0.1)), dtype, []

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        self.calls.append(len(input_ids))
        values = input_ids.float() * attention_mask * self.scale
        return SimpleNamespace(logits=values.to(self.dtype).unsqueeze(-1))


def test_values_are_read_at_the_position_before_each_completion_token(tiny_model_dir, tmp_path):
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    trainer.critic = _TokenValues(torch.bfloat16)
    ids = torch.tensor([[1, 2, 3, 4, 5], [0, 6, 7, 8, 0], [1, 1, 2, 0, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # the critic sees the padding
    values = trainer._values(ids, attention, length=3, chunk=2)
    assert values.dtype == torch.float32 and trainer.critic.calls == [2, 1]
    assert torch.allclose(values, torch.tensor([[0.2, 0.3, 0.4], [0.6, 0.7, 0.8], [0.0, 0.2, 0.0]]), atol=2e-3)
    assert trainer._values(ids, attention, length=3).tolist() == values.tolist() and trainer.critic.calls[-1] == 3


def _rollout() -> dict:
    """Three completions of a generation batch: three real tokens, two, one (prompts of two tokens)."""
    return {
        "prompt_ids": torch.tensor([[1, 2], [0, 6], [1, 1]]),
        "prompt_mask": torch.tensor([[1, 1], [0, 1], [1, 1]]),
        "completion_ids": torch.tensor([[3, 4, 5], [7, 8, 0], [2, 0, 0]]),
        "completion_mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]),
    }


def _rollout_trainer(model_dir, out, monkeypatch, sequence, **settings):
    """A trainer whose TRL rollout returns ``_rollout()`` and whose rewards were ``sequence``, with the stand-in
    critic; the policy in training mode."""
    from trl import GRPOTrainer

    trainer = _bare_trainer(model_dir, out, **settings)
    trainer.critic = _TokenValues()
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", lambda self, inputs: _rollout())
    trainer._sequence_rewards = torch.tensor(sequence)
    trainer.model.train()
    return trainer


def test_rollouts_get_gae_advantages_and_returns_and_skip_unscored_completions(tiny_model_dir, tmp_path, monkeypatch):
    """gamma 0.5, lambda 1: A_t = 0.5**(last - t) * R - V_t and the return 0.5**(last - t) * R, with V the stand-in
    critic's 0.1 x the token before t. The third completion is unscored (NaN): no advantage, out of the value mask.
    The critic reads the batch per_device_train_batch_size (2) rows at a time."""
    settings = {"gamma": 0.5, "lam": 1.0, "whiten_advantages": False, "per_device_train_batch_size": 2}
    trainer = _rollout_trainer(
        tiny_model_dir, tmp_path / "ppo", monkeypatch, [1.0, 2.0, float("nan")], num_generations=2, **settings
    )
    out = trainer._generate_and_score_completions([])
    assert trainer.critic.calls == [2, 1]
    values = torch.tensor([[0.2, 0.3, 0.4], [0.6, 0.7, 0.8], [0.1, 0.2, 0.0]])
    assert torch.allclose(out["old_values"], values)
    assert out["value_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    returns = torch.tensor([[0.25, 0.5, 1.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(out["returns"], returns, atol=1e-6)
    expected = torch.tensor([[0.05, 0.2, 0.6], [0.4, 1.3, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(out["advantages"], expected, atol=1e-6)
    trainer.args.whiten_advantages = True  # whitened over the five scored tokens only
    white = trainer._generate_and_score_completions([])["advantages"]
    real = expected[:2].flatten()[:5]
    assert torch.allclose(white[:2].flatten()[:5], (real - real.mean()) / real.std(), atol=1e-5)
    assert white[1, 2] == 0.0 and white[2].tolist() == [0.0, 0.0, 0.0]


def test_evaluation_rollouts_are_left_as_trl_made_them(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _rollout_trainer(tiny_model_dir, tmp_path / "ppo", monkeypatch, [1.0, 2.0, 3.0])
    trainer.model.eval()
    out = trainer._generate_and_score_completions([])
    assert out.keys() == _rollout().keys() and trainer.critic.calls == []


@pytest.mark.parametrize("old_logps_given", [True, False])
def test_the_kl_to_the_reference_is_charged_per_token(tiny_model_dir, tmp_path, monkeypatch, old_logps_given):
    """kl_coef 0.1, gamma = lambda = 1: rewards -0.1 x (policy - reference log-prob) on real tokens plus R at the last;
    the policy's log-probs are the rollout's old ones when TRL kept them, else the policy's own. The logged KL is the
    mean over completions of the per-completion sum on real tokens."""
    from trl import GRPOTrainer

    kl = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    reference = torch.full((3, 3), -2.0)
    rollout = {**_rollout(), "old_per_token_logps": reference + kl} if old_logps_given else _rollout()
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", lambda self, inputs: dict(rollout))
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", kl_coef=0.1, whiten_advantages=False)
    trainer.critic, trainer._sequence_rewards = _TokenValues(), torch.tensor([1.0, 2.0, 0.0])
    trainer.model.train()
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    seen = []

    def logps(model, ids, attention, length, *args, **kwargs):
        seen.append((model, ids.shape, length))
        assert torch.equal(attention, torch.cat([rollout["prompt_mask"], rollout["completion_mask"]], dim=1))
        if model is trainer.ref_model:
            return reference, None
        return (reference + kl if not old_logps_given else torch.full((3, 3), 100.0)), None

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", logps)
    out = trainer._generate_and_score_completions([])
    # row 0: r = [-0.1, -0.2, -0.3 + 1]; A_t = sum of r from t - V_t = [0.4 - 0.2, 0.5 - 0.3, 0.7 - 0.4]
    # row 1: r = [-0.4, -0.5 + 2]; A = [1.1 - 0.6, 1.5 - 0.7]; row 2: r = [-0.7]; A = [-0.7 - 0.1]
    expected = torch.tensor([[0.2, 0.2, 0.3], [0.5, 0.8, 0.0], [-0.8, 0.0, 0.0]])
    assert torch.allclose(out["advantages"], expected, atol=1e-6)
    assert trainer._metrics["train"]["ppo/kl"] == [pytest.approx((6 + 9 + 7) / 3)]
    models = [m for m, _, _ in seen]
    assert models == ([trainer.ref_model] if old_logps_given else [trainer.model, trainer.ref_model])
    assert all(shape == (3, 5) and length == 3 for _, shape, length in seen)


def test_without_kl_coef_no_reference_is_built_and_no_kl_logged(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _rollout_trainer(tiny_model_dir, tmp_path / "ppo", monkeypatch, [1.0, 2.0, 3.0])
    assert trainer.ref_model is None
    trainer._generate_and_score_completions([])
    assert "ppo/kl" not in trainer._metrics["train"]


def _left_padded() -> torch.Tensor:
    """Two rows of six positions, the second left-padded by two: as generation pads prompts."""
    return torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


def test_a_lora_policy_is_its_own_reference_with_the_adapters_off(tiny_model_dir, tmp_path):
    """With LoRA no reference copy is made: the reference log-probs are the policy's with its adapters disabled."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", peft_config=lora, kl_coef=0.1)
    assert trainer.ref_model is None
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    ids, attention = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0)), _left_padded()
    policy = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, 3)[0]
    with trainer.model.disable_adapter():
        base = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, 3)[0]
    reference = trainer._reference_logps(ids, attention, 3)
    assert torch.allclose(reference, base) and not torch.allclose(reference, policy, atol=1e-3)
    with trainer.model.disable_adapter():
        unpadded = trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones(2, 6), 3)[0]
    assert not torch.allclose(reference, unpadded, atol=1e-4)  # the attention mask was used
    assert torch.allclose(trainer._policy_logps({}, ids, attention, 3), policy)  # the adapters are back on


def test_a_separate_reference_gives_its_own_log_probs(tiny_model_dir, tmp_path):
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", kl_coef=0.1)
    ids, attention = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0)), _left_padded()
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.mul_(3.0)  # the policy moves; its reference does not
    reference = trainer._reference_logps(ids, attention, 3)
    own = trainer._get_per_token_logps_and_entropies(trainer.ref_model, ids, attention, 3)[0]
    assert reference.shape == (2, 3) and torch.equal(reference, own)
    unpadded = trainer._get_per_token_logps_and_entropies(trainer.ref_model, ids, torch.ones(2, 6), 3)[0]
    assert not torch.allclose(reference, unpadded, atol=1e-4)  # the attention mask was used
    policy = trainer._policy_logps({}, ids, attention, 3)
    assert torch.equal(policy, trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, 3)[0])
    assert not torch.allclose(reference, policy, atol=1e-3)
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())


def test_each_process_keeps_its_weighted_sequence_rewards(tiny_model_dir, tmp_path, monkeypatch):
    from trl import GRPOTrainer

    per_func = torch.tensor([[1.0, 2.0], [float("nan"), 4.0], [3.0, 0.0], [1.0, 1.0]])
    seen = []
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, *args: seen.append(args) or per_func)
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    assert trainer._sequence_rewards is None  # none before the first batch
    trainer.reward_weights = torch.tensor([1.0, 0.5])
    args = ([{"prompt": "p"}], ["p", "q", "r"], ["a", "b", "c"], [[1], [2], [3]])
    assert trainer._calculate_rewards(*args) is per_func and seen == [args]
    assert trainer._sequence_rewards.tolist() == [2.0, 2.0, 3.0]  # process 0 of 1: its first len(prompts) rows


def _loss_inputs(**overrides) -> dict:
    return {
        "prompt_ids": torch.tensor([[1, 2], [0, 6]]),
        "prompt_mask": torch.tensor([[1, 1], [0, 1]]),
        "completion_ids": torch.tensor([[3, 4, 5], [7, 8, 0]]),
        "completion_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
        "old_values": torch.tensor([[0.2, 0.0, 0.4], [0.6, 0.7, 0.0]]),
        "returns": torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 5.0]]),
        "value_mask": torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
        **overrides,
    }


def _loss_trainer(model_dir, out, monkeypatch, **settings):
    """TRL's policy loss stubbed to 2.0; the stand-in critic gives the values [[.2, .3, .4], [.6, .7, .8]]."""
    from trl import GRPOTrainer

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", lambda self, model, inputs: torch.tensor(2.0))
    trainer = _bare_trainer(model_dir, out, vf_coef=0.25, cliprange_value=0.1, **settings)
    trainer.critic, trainer.current_gradient_accumulation_steps = _TokenValues(), 2
    return trainer


@pytest.mark.parametrize("step, policy", [(0, 0.0), (1, 2.0)])  # warm-up: the policy's loss counts from step 1
def test_the_loss_adds_the_clipped_value_loss_weighted_and_split_over_accumulation(
    tiny_model_dir, tmp_path, monkeypatch, step, policy
):
    """Per token 0.5 x the larger squared error: .32, .405 (0.3 moved 0.3 from 0: clipped to 0.1), .18, .18, .845
    (the padding's error left out): mean 0.386 over 5 tokens; 1 of 5 clipped. Loss: policy + 0.25 x 0.386 / 2.
    Explained variance of the returns by the rollout's values: 1 - var(.8, 1, .6, -.6, 1.3) / var(1, 1, 1, 0, 2)."""
    trainer = _loss_trainer(tiny_model_dir, tmp_path / "ppo", monkeypatch, critic_warmup_steps=1)
    trainer.state.global_step = step
    loss = trainer._compute_loss(trainer.model, _loss_inputs())
    assert loss.item() == pytest.approx(policy + 0.25 * 0.386 / 2)
    metrics = trainer._metrics["train"]
    assert metrics["value_loss"] == [pytest.approx(0.386)] and metrics["value/clipfrac"] == [pytest.approx(0.2)]
    assert metrics["value/explained_variance"] == [pytest.approx(1 - 0.532 / 0.5)]


def test_evaluation_batches_carry_only_the_policy_loss(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _loss_trainer(tiny_model_dir, tmp_path / "ppo", monkeypatch)
    inputs = {k: v for k, v in _loss_inputs().items() if k not in ("returns", "old_values", "value_mask")}
    assert trainer._compute_loss(trainer.model, inputs).item() == 2.0
    assert trainer.critic.calls == [] and "value_loss" not in trainer._metrics["train"]


def test_explained_variance_needs_two_tokens_and_survives_constant_returns(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _loss_trainer(tiny_model_dir, tmp_path / "ppo", monkeypatch)
    one = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    trainer._compute_loss(trainer.model, _loss_inputs(value_mask=one))
    assert (
        "value/explained_variance" not in trainer._metrics["train"]
        and len(trainer._metrics["train"]["value_loss"]) == 1
    )
    two = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # two tokens: returns 1, 1 (no variance), residuals .8, 1
    trainer._compute_loss(trainer.model, _loss_inputs(value_mask=two, returns=torch.tensor([[1.0, 1.0, 0.0]] * 2)))
    assert trainer._metrics["train"]["value/explained_variance"] == [pytest.approx(1 - 0.02 / 1e-8, rel=1e-4)]
    trainer._metrics["train"].clear()
    flat = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # the returns do not vary: variance floored at 1e-8
    trainer._compute_loss(trainer.model, _loss_inputs(returns=flat))
    residual = torch.tensor([0.8, 1.0, 0.6, 0.4, 0.3])
    expected = 1 - residual.var().item() / 1e-8
    assert trainer._metrics["train"]["value/explained_variance"] == [pytest.approx(expected, rel=1e-4)]


def test_the_critic_gets_one_optimizer_group_at_its_own_learning_rate(tiny_model_dir, tmp_path):
    """Its own learning rate and no weight decay (the policy's groups keep theirs); created once however often the
    optimizer is asked for; without critic_learning_rate the policy's."""
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", learning_rate=2e-4, critic_learning_rate=3e-3,
                            weight_decay=0.1)  # fmt: skip
    critic = [p for p in trainer.critic.parameters() if p.requires_grad]
    optimizer = trainer.create_optimizer()
    assert trainer.create_optimizer() is optimizer
    groups = [g for g in optimizer.param_groups if any(p is critic[0] for p in g["params"])]
    assert len(groups) == 1 and len(groups[0]["params"]) == len(critic) == 22
    assert all(a is b for a, b in zip(groups[0]["params"], critic))
    assert (groups[0]["lr"], groups[0]["weight_decay"]) == (3e-3, 0.0)
    assert {g["weight_decay"] for g in optimizer.param_groups if g is not groups[0]} == {0.1, 0.0}
    default = _bare_trainer(tiny_model_dir, tmp_path / "default", learning_rate=2e-4).create_optimizer()
    assert default.param_groups[-1]["lr"] == 2e-4


def test_a_checkpoint_saves_the_critic_and_restores_it_with_the_optimizer(tiny_model_dir, tmp_path, monkeypatch):
    """The critic's weights go to checkpoint-N/critic beside the trainer's files, and come back with the optimizer's
    state (its moments for policy and critic) on resume. Run from an empty folder: nothing is read or written
    relative to the working directory."""
    from safetensors.torch import load_file

    monkeypatch.chdir(tmp_path)
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    for p in [*trainer.model.parameters(), *trainer.critic.parameters()]:
        p.grad = torch.ones_like(p)
    trainer.optimizer.step()  # moments to save
    with torch.no_grad():  # and weights unlike a fresh critic's (the first step's learning rate is 0: warm-up)
        for p in trainer.critic.parameters():
            p.add_(1.0)
    trainer.state.global_step = 3
    trainer._save_checkpoint(trainer.model, None)
    trainer._save_checkpoint(trainer.model, None)  # the same step again (a final save): overwritten
    folder = tmp_path / "ppo" / "checkpoint-3"
    saved = load_file(folder / "critic" / "model.safetensors")
    state = trainer.critic.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], v) for k, v in state.items())
    assert (folder / "trainer_state.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["ppo"]
    fresh = _bare_trainer(tiny_model_dir, tmp_path / "fresh")
    fresh.create_optimizer_and_scheduler(num_training_steps=4)
    fresh._load_optimizer_and_scheduler(None)  # a fresh start loads nothing
    assert not torch.equal(fresh.critic.score.weight, saved["score.weight"]) and not fresh.optimizer.state
    fresh._load_optimizer_and_scheduler(str(folder))
    assert all(torch.equal(saved[k], v) for k, v in fresh.critic.state_dict().items())
    moments = [fresh.optimizer.state[p]["exp_avg"] for p in fresh.critic.parameters()]
    assert len(moments) == 22 and all(torch.allclose(m, torch.full_like(m, 0.1)) for m in moments)  # (1 - 0.9) x 1


def test_under_a_hyperparameter_search_the_critic_is_saved_in_the_trials_checkpoint(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from transformers.trainer_utils import HPSearchBackend

    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    trainer.hp_search_backend, trainer.state.global_step = HPSearchBackend.OPTUNA, 2
    trainer._save_checkpoint(trainer.model, SimpleNamespace(number=7))  # an optuna trial: run-7
    folder = tmp_path / "ppo" / "run-7" / "checkpoint-2"
    assert (folder / "critic" / "model.safetensors").is_file() and (folder / "trainer_state.json").is_file()
    assert not (tmp_path / "ppo" / "checkpoint-2").exists()


def test_a_separate_critic_starts_from_critic_model_with_the_tokenizers_pad_and_no_dropout(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        other.get_input_embeddings().weight.mul_(2.0)
    other.config.pad_token_id = 7
    other.save_pretrained(tmp_path / "other")
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", critic_model=str(tmp_path / "other"))
    critic = trainer.critic
    assert torch.equal(critic.get_input_embeddings().weight, other.get_input_embeddings().weight)
    assert critic.config.pad_token_id == trainer.processing_class.pad_token_id == 0 and critic.num_labels == 1
    dropouts = [m for m in critic.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)  # the score head's 0.1 is off
    assert critic.dtype == torch.float32 and not critic.is_activation_checkpointing
    plain = _bare_trainer(tiny_model_dir, tmp_path / "plain").critic  # default: the policy's start
    assert torch.equal(plain.get_input_embeddings().weight, trainer.model.get_input_embeddings().weight)


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"every_n_layers": 2, "offload": True, "use_reentrant": True}, ({"use_reentrant": True}, 2, True)),
        (None, (None, 1, False)),
    ],
)
def test_the_critics_activation_checkpointing_takes_the_policys_settings(tiny_model_dir, tmp_path, monkeypatch,
                                                                        given, expected):  # fmt: skip
    from transformers import AutoModelForTokenClassification, PreTrainedModel

    calls = []
    original = PreTrainedModel.activation_checkpointing_enable

    def spy(self, kwargs=None, every_n_layers=1, offload=False):
        calls.append((type(self).__name__, kwargs, every_n_layers, offload))
        return original(self, kwargs, every_n_layers=every_n_layers, offload=offload)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", spy)
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", activation_checkpointing=True,
                            activation_checkpointing_kwargs=given)  # fmt: skip
    critic = [c[1:] for c in calls if c[0] == "LlamaForTokenClassification"]
    assert critic == [expected] and trainer.critic.is_activation_checkpointing
    assert isinstance(trainer.critic, AutoModelForTokenClassification._model_mapping[type(trainer.model.config)])


def test_a_shared_critic_reads_the_policys_hidden_states_through_a_zero_head(tiny_model_dir, tmp_path):
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", "bfloat16", critic="shared")
    head = trainer.critic.head
    assert [n for n, _ in trainer.critic.named_parameters()] == ["head.weight", "head.bias"]
    assert head.weight.dtype == torch.float32 and not head.weight.any() and not head.bias.any()
    assert {n: tuple(p.shape) for n, p in trainer.critic.named_parameters()} == {
        "head.weight": (1, 64),
        "head.bias": (1,),
    }
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    attention = _left_padded()
    assert trainer._values(ids, attention, 3).tolist() == [[0.0] * 3] * 2  # a fresh head: every value 0
    with torch.no_grad():
        head.weight.fill_(1.0)
        head.bias.fill_(0.5)
    hidden = trainer.model.get_decoder()(input_ids=ids, attention_mask=attention).last_hidden_state.float()
    assert torch.allclose(trainer._values(ids, attention, 3), hidden.sum(-1)[:, 2:5] + 0.5, atol=1e-3)
    unpadded = trainer.model.get_decoder()(input_ids=ids).last_hidden_state.float()
    assert not torch.allclose(hidden[1], unpadded[1], atol=1e-2)  # so the head read the padded row's own states
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.mul_(2.0)  # the trunk is the policy's: its change shows
    assert not torch.allclose(trainer._values(ids, attention, 3), hidden.sum(-1)[:, 2:5] + 0.5, atol=1e-2)


def test_a_shared_critic_refuses_several_processes(tiny_model_dir, tmp_path, monkeypatch):
    from accelerate import Accelerator

    from rlrefine.core.protocols import UsageError

    monkeypatch.setattr(Accelerator, "num_processes", property(lambda self: 2))
    with pytest.raises(UsageError, match=r"^critic: shared runs in one process; use critic: separate with several"):
        _bare_trainer(tiny_model_dir, tmp_path / "ppo", critic="shared")


def test_gae_of_one_token_and_with_a_float64_mask():
    """A one-token completion: its advantage is r - V. The mask's dtype does not change the float32 arithmetic."""
    advantages, returns = gae(torch.tensor([[2.0]]), torch.tensor([[0.5]]), torch.tensor([[1]]), gamma=0.9, lam=0.8)
    assert advantages.tolist() == [[1.5]] and returns.tolist() == [[2.0]]
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 6, generator=generator), torch.randn(3, 6, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    as_int = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    as_double = gae(rewards, values, mask.double(), gamma=0.9, lam=0.8)
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(as_int, as_double))


def test_token_rewards_charge_no_kl_unless_a_coefficient_is_given_and_stay_float32():
    mask, kl = torch.tensor([[1, 1]]), torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    assert token_rewards(torch.tensor([1.0]), mask, kl).tolist() == [[0.0, 1.0]]  # kl_coef defaults to 0
    rewards = token_rewards(torch.tensor([1.0], dtype=torch.float64), mask, kl, kl_coef=0.5)
    assert rewards.dtype == torch.float32 and rewards.tolist() == [[-0.25, 0.0]]


def test_value_loss_clips_a_move_away_from_the_rollout_value_downwards_too():
    """Rollout value 1, new value -1, return -3, clip 0.5: the value may only move to 0.5, whose error (3.5) is the
    larger: loss 0.5 * 3.5**2; the move counts as clipped."""
    loss, clipped = clipped_value_loss(
        torch.tensor([[-1.0]]), torch.tensor([[1.0]]), torch.tensor([[-3.0]]), torch.tensor([[1.0]]), clip=0.5
    )
    assert loss.item() == 0.5 * 3.5**2 and clipped.item() == 1.0


def test_whiten_does_not_blow_up_nearly_equal_advantages():
    """Advantages 1e-9 apart: the 1e-8 in the denominator keeps them near 0 (not +-0.7), in their order."""
    white = whiten(torch.tensor([[0.0, 1e-9]]), torch.tensor([[1, 1]]))
    assert white[0, 0] < 0 < white[0, 1] and white.abs().max() < 0.05


def test_the_optimizer_covers_the_model_it_is_given_plus_the_critic(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo")
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    optimizer = trainer.create_optimizer(other)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in other.parameters()) and all(id(p) in held for p in trainer.critic.parameters())
    assert not any(id(p) in held for p in trainer.model.parameters())


def test_a_lora_critic_does_not_train_the_policys_modules_to_save(tiny_model_dir, tmp_path):
    """The policy saves (trains whole) its embeddings and lm_head; the critic's trainable part stays LoRA plus its
    score head."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="CAUSAL_LM",
                      modules_to_save=["lm_head", "embed_tokens"])  # fmt: skip
    trainer = _bare_trainer(tiny_model_dir, tmp_path / "ppo", peft_config=lora)
    trainable = {n for n, p in trainer.critic.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable), trainable


def test_sequence_rewards_move_the_weights_to_the_rewards_device():
    """TRL keeps the reward weights on the CPU while the gathered rewards are on the accelerator; the meta device
    stands in for it here (a CPU tensor times a meta one fails)."""
    per_func = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device="meta")
    weighted = sequence_rewards(per_func, torch.tensor([1.0, 0.5]), process_index=0, n=2)
    assert weighted.device.type == "meta" and weighted.shape == (2,)
