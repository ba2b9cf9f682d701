"""Whatever TRL accepts as a reward, rlrefine accepts too, end to end through train.py; a reward that misbehaves
(NaN, an exception) is visible, and the run resumes once it is fixed."""

import json
import pickle
from pathlib import Path

import pytest

from rlrefine.core.registry import BUILTIN, build
from rlrefine.train import main
from rlrefine.training.rl import AsyncWatched, Watched, build_rewards

TINY = "--data world:small --train_limit 16 --eval_limit 8 --eval_solvers hops=1 --pass_k 2 --logging_steps 1"
TINY += " --per_device_train_batch_size 8 --num_generations 4 --max_completion_length 24 --save_steps 1"

PLUGIN = '''
import asyncio
import os

from rlrefine.core.format import completion_text


async def slow_length(prompts, completions, target: int = 2, **kwargs):
    """An async reward, as one calling a remote judge would be; ``target`` comes from the config."""
    await asyncio.sleep(0.01)
    return [-abs(len(completion_text(c).splitlines()) - target) / 10 for c in completions]


def sometimes_nan(prompts, completions, **kwargs):
    return [float("nan") if i % 2 else 0.0 for i in range(len(completions))]


def flaky(prompts, completions, trainer_state=None, **kwargs):
    if os.environ.get("FLAKY_BROKEN") and trainer_state.global_step >= 2:
        raise ConnectionError("judge unreachable")
    return [0.0] * len(completions)
'''


@pytest.fixture()
def plugin(tmp_path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(PLUGIN)
    return path


def _trl_rewards() -> list[dict]:
    """Every public reward TRL ships, with settings where it needs them, at weight 0 (they only have to run)."""
    import trl.rewards

    needs = {
        "get_soft_overlong_punishment": {"max_completion_len": 24, "soft_punish_cache": 8},
        "get_cosine_scaled_reward": {"max_len": 24},
    }
    names = [n for n in dir(trl.rewards) if not n.startswith("_") and not n.endswith("_rewards")]
    assert len(names) >= 6, names  # accuracy, reasoning accuracy, cosine, think format, repetition, overlong
    return [{"name": f"trl.rewards:{n}", "weight": 0.0, **needs.get(n, {})} for n in names]


@pytest.mark.slow
def test_trl_and_async_rewards_train_end_to_end(tiny_decomposer, tmp_path, plugin):
    rewards = [
        {"name": "solver"},
        {"name": f"{plugin}:slow_length", "target": 3, "weight": 0.1},
        {"name": f"{plugin}:sometimes_nan", "weight": 0.0},
        *_trl_rewards(),
    ]
    run = tmp_path / "run"
    argv = [*TINY.split(), "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--max_steps", "2"]
    main([*argv, "--rewards", json.dumps(rewards)])
    card = json.loads((run / "rl" / "eval.json").read_text())
    facts, logged = card["training"], card["log_history"]
    assert facts["steps"] == 2
    assert facts["reward_seconds"]["slow_length"] >= 2 * 0.01  # awaited, and timed
    assert facts["nonfinite_rewards"]["sometimes_nan"] > 0 and facts["nonfinite_rewards"]["slow_length"] == 0
    for name in ["slow_length", "soft_overlong_punishment_reward", "accuracy_reward", "think_format_reward"]:
        assert any(f"rewards/{name}/mean" in h for h in logged), name
    assert any(h.get("rewards/sometimes_nan/nonfinite", 0) > 0 for h in logged)


@pytest.mark.slow
def test_a_failing_reward_names_itself_and_the_run_resumes(tiny_decomposer, tmp_path, plugin, monkeypatch):
    run = tmp_path / "run"
    rewards = json.dumps([{"name": "solver"}, {"name": f"{plugin}:flaky"}])
    argv = [*TINY.split(), "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--max_steps", "4"]
    monkeypatch.setenv("FLAKY_BROKEN", "1")
    with pytest.raises(RuntimeError, match="^reward flaky failed at step 2: ConnectionError: judge unreachable"):
        main([*argv, "--rewards", rewards])
    assert not (run / "rl").exists() and (run / "rl.work" / "checkpoint-2").is_dir()
    monkeypatch.delenv("FLAKY_BROKEN")
    main([*argv, "--rewards", rewards, "--resume"])
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 4 and facts["resumed_from"].endswith("checkpoint-2")


def test_every_builtin_reward_pickles(reward_batch):
    completions, ids, columns = reward_batch
    for name in BUILTIN["reward"]:
        reward = build("reward", name)
        copy = pickle.loads(pickle.dumps(reward))
        assert copy(None, completions, ids, **columns) == reward(None, completions, ids, **columns), name
    funcs, _ = build_rewards([{"name": "solver"}, {"name": "cost"}], "hops=1")
    assert [type(f) for f in pickle.loads(pickle.dumps(funcs))] == [Watched, Watched]


def test_settings_bind_to_a_plain_function_keeping_its_name_and_async(plugin):
    from trl.trainer.utils import get_callable_name, is_async_callable

    (func,), _ = build_rewards([{"name": f"{plugin}:slow_length", "target": 1}], "hops=1")
    assert isinstance(func, AsyncWatched) and is_async_callable(func) and get_callable_name(func) == "slow_length"
    import asyncio

    assert asyncio.run(func(None, ["Q1: a ?\nQ2: b ?"])) == [-0.1]  # two lines, target 1
    with pytest.raises(ValueError, match="takes settings its own keyword parameters .target., not colour"):
        build_rewards([{"name": f"{plugin}:slow_length", "colour": 1}], "hops=1")
    (labelled,), weights = build_rewards([{"name": "format", "label": "fmt", "weight": 0.5}], "hops=1")
    assert labelled.__name__ == "fmt" and weights == [0.5]
