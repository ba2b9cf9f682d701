"""A decomposer that talks to its solver: dialogue SFT data with the solver's real answers, the solver mix, and
multi-turn GRPO and RLOO through TRL's rollout_func (the policy's tokens trained, the solver's masked, every turn as the
chat template renders it; RLOO's update the one TRL's RLOO trainer makes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlrefine.core.format import NO_DECOMPOSITION, dynamic_messages, numbered, parse
from rlrefine.core.protocols import Decomposed, UsageError
from rlrefine.data import load_split
from rlrefine.evaluation.dynamic import next_question, written
from rlrefine.solvers import make_solver, shared_solver
from rlrefine.training.distill import decomposer_dataset
from rlrefine.training.settings import PipelineArgs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows():
    return list(load_split("world:small", "train", 40))


def _answer(solver, row, asked) -> str | None:
    return solver.solve([row], [list(asked)])[0].trace[-1].get("answer")


@pytest.mark.parametrize("variant", ["sd-t", "sd-r", "oracle"])
def test_dialogue_data_asks_one_subquestion_a_turn_after_the_solvers_real_answers(rows, variant):
    data = list(decomposer_dataset(rows, variant, "teacher", "hops=1", rollout="dynamic"))
    by_problem = {}
    for example in data:
        by_problem.setdefault(example["id"], []).append(example)
    solver = make_solver("hops=1")
    for turns in by_problem.values():
        row = next(r for r in rows if r["id"] == turns[0]["id"])
        asked = []
        for k, example in enumerate(turns):
            assert example["prompt"] == dynamic_messages(
                row["context"],
                row["question"],
                [(q, _answer(solver, row, asked[: i + 1])) for i, q in enumerate(asked)],
                "",
            )
            text = example["completion"][0]["content"]
            if k == len(turns) - 1:
                assert text == NO_DECOMPOSITION  # the dialogue ends when the decomposer says so
            else:
                (question,) = parse(text, None).subquestions
                assert text == numbered(k + 1, question)
                asked.append(question)
        final = solver.solve([row], [asked])[0].answer
        assert turns[0]["correct"] == (final == row["answer"])
        if variant != "sd-t":  # SD-R keeps what the solver answered right; the oracle's are all right with hops=1
            assert turns[0]["correct"] is True
    if variant == "sd-t":
        assert {e["correct"] for e in data} == {True, False}  # the flawed teacher's wrong dialogues are kept
        assert len(by_problem) > len(
            {e["id"] for e in decomposer_dataset(rows, "sd-r", "teacher", "hops=1", rollout="dynamic")}
        )


def test_a_solver_mix_gives_each_problem_one_of_its_solvers_always_the_same(rows):
    mix = make_solver("{name: mix, solvers: [hops=1, hops=2]}")
    assert mix.name == "mix[hops=1|hops=2]" and mix.requires == ("graph",)
    chosen = [mix.of(r) for r in rows]
    assert {s.name for s in chosen} == {"hops=1", "hops=2"}  # both take part
    assert chosen == [mix.of(dict(r)) for r in rows]  # by the problem, not by the object or the call
    subquestions = [[] for _ in rows]  # direct solves: hops=2 bridges more than hops=1
    results = mix.solve(rows, subquestions)
    for row, solver, result in zip(rows, chosen, results):
        assert result.answer == solver.solve([row], [[]])[0].answer
    order = list(reversed(range(len(rows))))  # another batch, another order: the same solver answers each problem
    again = mix.solve([rows[i] for i in order], [[] for _ in rows])
    assert [r.answer for r in again] == [results[i].answer for i in order]
    with pytest.raises(UsageError, match="list of solver specs"):
        make_solver({"name": "mix", "solvers": "hops=1"})


def test_rollout_settings_name_what_is_valid():
    with pytest.raises(UsageError, match="unknown rollout 'dynamc'; valid: static, dynamic"):
        PipelineArgs(rollout="dynamc")
    with pytest.raises(UsageError, match="dialogue .TRL's rollout_func.: grpo or rloo, not ppo"):
        PipelineArgs(rollout="dynamic", algorithm="ppo")
    assert PipelineArgs(rollout="dynamic").eval_modes == ["static", "dynamic"]  # evaluated as it was trained
    from rlrefine.training.settings import parse_pipeline, refuse_clashes

    with pytest.raises(UsageError, match="generates each turn with transformers, not vLLM"):
        refuse_clashes(*parse_pipeline(["--rollout", "dynamic", "--use_vllm", "true"])[:2])
    with pytest.raises(
        UsageError, match=r"rloo with rollout: dynamic trains without a KL penalty: set beta 0 \(not 0.05\)"
    ):
        refuse_clashes(*parse_pipeline(["--rollout", "dynamic", "--algorithm", "rloo", "--beta", "0.05"])[:2])


def test_rewards_see_a_dialogues_decomposition_as_the_completion():
    from rlrefine.training.rl import build_rewards

    (fmt, tokens), _ = build_rewards([{"name": "format", "cap": None}, {"name": "token_cost", "per_token": 1}], "")
    dialogue = [[{"role": "assistant", "content": "Q1: How many a ?<|end|><|user|>A1: 3 ..."}]]
    trl = {"prompts": [[]], "completions": dialogue, "completion_ids": [list(range(12))]}  # as TRL calls a reward
    seen = {"decomposition": ["Q1: How many a ?"], "policy_ids": [[5, 6, 7]]}
    assert fmt(**trl) == [0.0]  # the policy's and the solver's turns in one text are no decomposition
    assert fmt(**trl, **seen) == [1.0]
    assert tokens(**trl, **seen) == [-3.0]  # the policy pays for its own tokens only


def _trainer(decomposer, out: Path, rewards: list, algorithm="grpo", rollout="dynamic", solver="hops=1", **settings):
    """The trainer the RL stage builds for ``algorithm`` and ``rollout``, on 16 problems, 4 completions a prompt."""
    from transformers import AutoModelForCausalLM

    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.rl import build_rewards, dialogue_rollout, train_dataset
    from rlrefine.training.settings import algorithm_of, defaults_for

    args = PipelineArgs(data="world:small", train_limit=16, rollout=rollout, rewards=rewards, train_solver=solver)
    tokenizer = load_tokenizer(decomposer)
    funcs, weights = build_rewards(args.rewards, args.train_solver, tokenizer)
    config = {**defaults_for(algorithm), "output_dir": str(out), "per_device_train_batch_size": 8, "num_generations": 4}
    config.update(max_completion_length=24, logging_steps=1, save_strategy="no", reward_weights=weights, **settings)
    dataset = train_dataset(args)
    kind = algorithm_of(algorithm)
    dialogue = {"rollout_func": dialogue_rollout(args, dataset)} if rollout == "dynamic" else {}
    trainer = (kind.dialogue if dialogue else kind.trainer)(
        model=AutoModelForCausalLM.from_pretrained(decomposer, dtype="float32"),
        reward_funcs=funcs,
        args=kind.config(**config),
        train_dataset=dataset,
        processing_class=tokenizer,
        **dialogue,
    )
    return trainer, dataset


def _segments(ids, mask):
    """The completion split where the mask changes: (mask value, token ids) in order."""
    out = []
    for token, m in zip(ids, mask):
        if out and out[-1][0] == m:
            out[-1][1].append(token)
        else:
            out.append((m, [token]))
    return out


def test_a_rollout_is_the_dialogue_as_the_chat_template_renders_it_with_the_solvers_turns_masked(
    tiny_dialogue_decomposer, tmp_path
):
    trainer, dataset = _trainer(
        tiny_dialogue_decomposer, tmp_path / "grpo", [{"name": "solver"}, {"name": "format", "cap": 2}]
    )
    tokenizer, solver = trainer.processing_class, shared_solver("hops=1")

    def render(messages, **kw):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kw)

    rows = [dataset[i] for i in range(8) for _ in range(2)]  # each prompt twice, as TRL hands a group's prompts
    out = trainer.rollout_func([r["prompt"] for r in rows], trainer)
    assert len(out["completion_ids"]) == len(rows) == len(out["env_mask"]) == len(out["decomposition"])
    rounds = []
    for row, prompt, ids, mask, decomposition, own in zip(
        rows, out["prompt_ids"], out["completion_ids"], out["env_mask"], out["decomposition"], out["policy_ids"]
    ):
        assert prompt == render(row["prompt"], add_generation_prompt=True) and len(ids) == len(mask)
        parts = _segments(ids, mask)
        assert own == [t for m, p in parts if m for t in p]  # what the rewards count as the policy's tokens
        policy = [tokenizer.decode(p, skip_special_tokens=True).strip() for m, p in parts if m == 1]
        assert [m for m, _ in parts] == [1, 0] * (len(policy) - 1) + [1]  # the policy opens and closes the dialogue
        asked, closing = [], None
        for turn in policy:  # each turn asks its first new sub-question; one that holds none closes the dialogue
            question = next_question(Decomposed(turn), asked)
            asked += [question] * (question is not None)
            closing = None if question or parse(turn, None).parseable else turn
        history = [(q, _answer(solver, row, asked[: k + 1])) for k, q in enumerate(asked)]
        assert decomposition == written(history, closing)  # the dialogue as the policy wrote it
        rounds.append(len(asked))
        assert len(asked) <= 2  # the run's cap (the format reward's) is the dialogue's
        for k, (_, part) in enumerate(p for p in parts if p[0] == 0):
            # each solver turn: the template's user turn with the solver's answer to what was asked so far, after
            # the end-of-turn token the policy wrote
            before = dynamic_messages(row["context"], row["question"], history[:k], "")
            before.append({"role": "assistant", "content": numbered(k + 1, asked[k])})
            after = dynamic_messages(row["context"], row["question"], history[: k + 1], "")
            assert part == render(after, add_generation_prompt=True)[len(render(before)) :]
    assert max(rounds) == 2 and min(rounds) <= 1  # dialogues of different lengths, some at the cap


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_an_algorithm_trains_in_the_dialogue_with_only_the_policys_tokens_in_the_loss(
    tiny_dialogue_decomposer, tmp_path, algorithm
):
    import torch

    from rlrefine.training.dialogue import leave_one_out

    rewards = [{"name": "solver"}, {"name": "token_cost", "per_token": 0.01, "weight": 0.5}]
    trainer, dataset = _trainer(tiny_dialogue_decomposer, tmp_path / algorithm, rewards, algorithm, max_steps=2)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dataset[i] for i in range(2) for _ in range(4)])
    mask = batch["tool_mask"] * batch["completion_mask"]
    assert 0 < mask.sum() < batch["completion_mask"].sum()  # the solver's turns are out of the loss
    solved, cost = (torch.tensor(trainer._logs["rewards"][f.__name__]) for f in trainer.reward_funcs)
    reward = solved + 0.5 * cost  # the policy's own tokens only: the solver's turns would cost more
    assert torch.allclose(cost, -0.01 * mask.sum(1).float())
    if algorithm == "rloo":  # each completion against the mean of the other three in its group
        assert torch.allclose(batch["advantages"], leave_one_out(reward, 4))
    else:
        grouped = reward.view(-1, 4)
        expected = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
        assert torch.allclose(batch["advantages"], expected.view(-1), atol=1e-5)
    assert batch["advantages"].abs().sum() > 0
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    logged = [h for h in trainer.state.log_history if "decomposer/subquestions" in h]
    assert len(logged) == 2 and all(h["decomposer/subquestions"] >= 0 for h in logged)


@pytest.mark.slow
def test_the_pipeline_distills_refines_and_evaluates_a_decomposer_in_the_dialogue_on_two_processes(tmp_path):
    """The whole path on two gloo processes (configs/accelerate/multi_gpu.yaml): dialogue SFT data built once, each
    process talking over its own share of the rollouts (RLOO: each takes its slice of the batch's advantages), against
    a solver mix, with no cap."""
    from helpers import free_port

    run = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/multi_gpu.yaml"]
    launch += ["--main_process_port", str(free_port()), "--num_processes", "2", "--mixed_precision", "no"]
    cmd = [
        *launch, "rlrefine/train.py", "--data", "world:small", "--train_limit", "64", "--run_dir", str(run),
        "--rollout", "dynamic", "--algorithm", "rloo", "--train_solver", "{name: mix, solvers: [hops=1, hops=2]}",
        "--rewards", "[{name: solver}, {name: format, weight: 0.1, cap: null}]",
        "--sft", "{max_steps: 30, per_device_train_batch_size: 16}", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--num_generations", "4", "--eval_limit", "20", "--pass_k", "0",
        "--eval_solvers", "hops=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert (card["rollout"], card["steps"], card["num_processes"]) == ("dynamic", 2, 2)
    assert list(card["reward_seconds"]) == ["solver[mix[hops=1|hops=2]]", "format_validity"]
    results = json.loads((run / "results.json").read_text())
    cells = {c["decomposer"] for c in results["cells"]}
    assert {"sft (dynamic)", "rl-rloo (dynamic)", "sft", "rl-rloo"} <= cells


def test_a_dialogue_the_solver_failed_in_is_left_out_not_cut_short(rows, caplog):
    from rlrefine.core.protocols import SolveResult

    class Flaky:
        """hops=1, but no answer for every other problem once it has a sub-question to answer."""

        name, price_key = "flaky", "solver"
        inner = make_solver("hops=1")

        def solve(self, rows, subquestions):
            out = self.inner.solve(rows, subquestions)
            failed = SolveResult(answer=None, error="timeout")
            return [
                failed if sq and int(r["id"].split("-")[-1]) % 2 else o for r, sq, o in zip(rows, subquestions, out)
            ]

    data = decomposer_dataset(rows, "sd-t", "teacher", Flaky(), rollout="dynamic")
    kept = {e["id"] for e in data}
    whole = {e["id"] for e in decomposer_dataset(rows, "sd-t", "teacher", "hops=1", rollout="dynamic")}
    from rlrefine.decomposers import make_decomposer

    asking = {r["id"] for r in rows if parse(make_decomposer("teacher").decompose([r])[0].text).subquestions}
    assert kept == {i for i in whole if not (i in asking and int(i.split("-")[-1]) % 2)}
    assert "dialogues failed at the solver (flaky); left out" in caplog.text


class _Priced:
    """A solver object with its own price key, version and requirements, answering its name."""

    def __init__(self, name: str, requires=()) -> None:
        self.name, self.price_key, self.version, self.requires = name, f"{name}-price", f"{name}-v", requires

    def solve(self, rows, subquestions):
        from rlrefine.core.protocols import SolveResult

        return [SolveResult(answer=self.name) for _ in rows]


def test_a_mix_is_priced_versioned_and_checked_as_its_solvers_say():
    mix = make_solver({"name": "mix", "solvers": [_Priced("a", ("graph",)), _Priced("b"), _Priced("c", ("graph",))]})
    assert (mix.name, mix.price_key, mix.version, mix.requires) == ("mix[a|b|c]", "a-price", "a-v|b-v|c-v", ("graph",))
    (alone,) = make_solver({"name": "mix", "solvers": [_Priced("a")]}).solvers  # a mix of one is that solver
    assert alone.name == "a"


def test_a_problem_is_given_its_solver_by_its_id_or_else_its_question_the_same_in_every_run():
    mix = make_solver("{name: mix, solvers: [hops=1, hops=2]}")
    by_id = [mix.of({"id": q, "question": "zz ?"}).name for q in ("a ?", "b ?", "c ?", "d ?", "e ?")]
    by_question = [mix.of({"question": q}).name for q in ("a ?", "b ?", "c ?", "d ?", "e ?")]
    # a hash of the text, not Python's per-process hash: these are the same in every process and every release
    assert by_id == by_question == ["hops=1", "hops=1", "hops=2", "hops=2", "hops=1"]
    assert mix.of({"id": None, "question": "c ?"}).name == "hops=2"


def _with_nan(values):
    return [float("nan") if v is None else v for v in values]


@given(
    st.integers(2, 5).flatmap(
        lambda g: st.tuples(
            st.just(g),
            st.lists(st.lists(st.one_of(st.none(), st.floats(-5, 5)), min_size=g, max_size=g), min_size=1, max_size=4),
        )
    )
)
def test_rloo_scores_each_completion_against_the_mean_of_its_scorable_siblings(case):
    import torch

    from rlrefine.training.dialogue import leave_one_out

    group, groups = case
    expected = []
    for rewards in groups:
        for i, r in enumerate(rewards):
            others = [o for j, o in enumerate(rewards) if j != i and o is not None]
            expected.append(0.0 if r is None or not others else r - sum(others) / len(others))
    got = leave_one_out(torch.tensor(_with_nan([r for g in groups for r in g]), dtype=torch.float64), group)
    assert got.tolist() == pytest.approx(expected, abs=1e-9)


def test_rloo_normalizes_the_batchs_advantages_when_asked():
    import torch

    from rlrefine.training.dialogue import leave_one_out

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, float("nan")])
    plain = leave_one_out(rewards, 3)
    assert plain.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0, 0.0, 0.0])
    scored = plain[:5]
    assert leave_one_out(rewards, 3, normalize=True)[:5].tolist() == pytest.approx(
        ((scored - scored.mean()) / (scored.std() + 1e-4)).tolist()
    )


def test_rloo_in_the_dialogue_makes_the_update_trls_rloo_trainer_makes(tmp_path):
    """On one batch of sampled completions, with the advantages RLOO's trainer gave them: the dialogue trainer's loss
    has the RLOO trainer's gradient (both on-policy, beta 0), parameter for parameter."""
    import torch

    from rlrefine.engines.models import BASE_MODEL
    from rlrefine.training.dialogue import leave_one_out

    rewards = [{"name": "format", "cap": None}, {"name": "token_cost", "per_token": 0.02, "weight": 0.5}]
    rloo, dataset = _trainer(BASE_MODEL, tmp_path / "rloo", rewards, "rloo", rollout="static", max_steps=1)
    ours, _ = _trainer(BASE_MODEL, tmp_path / "ours", rewards, "rloo", max_steps=1)
    for trainer in (rloo, ours):
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
    batch = rloo._generate_and_score_completions([dataset[i] for i in range(2) for _ in range(4)])
    valid, cost = (torch.tensor(rloo._logs["rewards"][f.__name__]) for f in rloo.reward_funcs)
    assert torch.allclose(batch["advantages"], leave_one_out(valid + 0.5 * cost, 4))  # RLOO's own advantages
    assert batch["advantages"].abs().sum() > 0
    keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages")
    grads = []
    for trainer, inputs in ((rloo, batch), (ours, {k: batch[k] for k in keys})):
        trainer.model.zero_grad()
        trainer._compute_loss(trainer.model, inputs).backward()
        grads.append([p.grad.clone() for p in trainer.model.parameters()])
    assert any(g.abs().sum() > 0 for g in grads[0])
    for theirs, mine in zip(*grads):
        assert torch.allclose(theirs, mine, atol=1e-6, rtol=1e-4)
