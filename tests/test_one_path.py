"""One path for each concept: a spec means what its text says wherever it is run; input problems are one line, bugs
keep their traceback; every column of a problem reaches a plugin solver in RL as in evaluation; a new engine, dataset
or algorithm is one file."""

import json
import os

import pytest
from helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st

from rlrefine.commands.cli import main
from rlrefine.core import registry
from rlrefine.core.protocols import UsageError

PLUGINS = ROOT / "tests" / "plugins"
SPECS = ["hops=1", "hops=2,noise=0.1", "s1=memory=1", "noise=.1", "neural", "teacher:merge=0.3", "oracle", "1"]


@given(st.sampled_from(SPECS), st.sampled_from(["solver", "decomposer"]))
def test_a_spec_means_the_same_wherever_it_is_run(tmp_path_factory, spec, kind):
    """Folders named like every piece of the spec change nothing: ``hops=1`` stays the symbolic solver even where a
    folder ``1`` exists (it was a model labelled ``hops`` there)."""
    empty, crowded = tmp_path_factory.mktemp("empty"), tmp_path_factory.mktemp("crowded")
    for piece in {spec, *spec.replace("=", " ").replace(",", " ").replace(":", " ").split()}:
        (crowded / piece).mkdir(exist_ok=True)
    here = os.getcwd()
    try:
        outcomes = []
        for where in (empty, crowded):
            os.chdir(where)
            try:
                outcomes.append(registry.parse_spec(kind, spec))
            except UsageError:  # refused either way (the message may point at the folder: a hint, not a meaning)
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1]
    finally:
        os.chdir(here)


def test_a_folder_named_without_a_path_is_refused_showing_the_new_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "student").mkdir()
    with pytest.raises(
        UsageError, match=r"^decomposer 'student' is a folder: name it as one, ./student or model:student$"
    ):
        registry.parse_spec("decomposer", "student")
    assert registry.parse_spec("decomposer", "./student") == ("model", {"": "./student"})
    assert registry.parse_spec("decomposer", "sft=runs/x/sft") == ("model", {"label": "sft", "": "runs/x/sft"})
    assert registry.parse_spec("solver", "hops=1") == ("symbolic", {"hops": 1})


def test_input_problems_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    assert main(["eval", "--decomposers", "nonesuch", "--solvers", "hops=1"]) == 2
    assert capsys.readouterr().err.startswith("rlrefine eval: error: unknown decomposer 'nonesuch'")

    def broken(argv):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr("rlrefine.evaluation.evaluate.main", broken)
    with pytest.raises(ValueError, match="a bug"):  # not swallowed into exit code 2
        main(["eval"])


def test_every_column_reaches_a_plugin_solver_in_rl_as_in_eval(world_jsonl, tmp_path):
    """The rows a reward's solver sees are the dataset's rows, all columns (a user's own too), as TRL hands them."""
    from rlrefine.rewards.solver import SolverCorrectness

    from rlrefine.core.format import render
    from rlrefine.data import load_split
    from rlrefine.training.rl import train_dataset
    from rlrefine.training.settings import PipelineArgs

    lines = (world_jsonl / "train.jsonl").read_text().splitlines()[:6]
    rows = [{**json.loads(line), "difficulty": i} for i, line in enumerate(lines)]  # a column of the user's own
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = train_dataset(PipelineArgs(data=str(data)))
    inputs = [dict(r) for r in ds for _ in range(2)]  # TRL repeats each prompt's columns per generation
    kwargs = {k: [x[k] for x in inputs] for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")}
    completions = [render(x["subquestions"]) for x in inputs]
    seen = []

    class Recording:
        name, price_key = "recording", "solver"

        def solve(self, solved_rows, subquestions):
            from rlrefine.solvers.symbolic import SymbolicSolver

            seen.extend(solved_rows)
            return SymbolicSolver(hops=1).solve(solved_rows, subquestions)

    scores = SolverCorrectness(solver=Recording())(None, completions, None, **kwargs)
    assert scores == [1.0] * len(inputs)  # the oracle's sub-questions, graded right: nothing was dropped on the way
    evaluated = {r["id"]: r for r in load_split(str(data), "train")}
    for row in seen:
        assert {k: row[k] for k in evaluated[row["id"]]} == evaluated[row["id"]]  # every column, same values
    assert sorted({r["difficulty"] for r in seen}) == list(range(6)) and all(r["depth"] > 0 for r in seen)


def test_an_engine_in_one_file_is_a_solver_and_a_decomposer(test_rows):
    engine = f"{PLUGINS / 'echo_engine.py'}:EchoEngine"
    solver = registry.build("solver", {"name": engine, "model": "x", "answer": "12"})
    assert [r.answer for r in solver.solve(test_rows[:2], [[], []])] == ["12", "12"]
    decomposer = registry.build("decomposer", f"{engine}:x")
    assert decomposer.decompose(test_rows[:1])[0].text.startswith("Q1: ")
    assert decomposer.price_key == "teacher" and solver.name == "echo:x"
    with pytest.raises(
        UsageError, match=r"^EchoEngine backend: unknown setting.s. colour; valid: model, max_tokens, answer"
    ):
        registry.build("solver", {"name": engine, "model": "x", "colour": "red"})


def test_a_dataset_in_one_file_loads_through_the_schema():
    from rlrefine.data import load_split

    test = load_split(f"{PLUGINS / 'tiny_dataset.py'}:problems", "test")
    assert test["answer"] == ["5", "6", "7"] and test["difficulty"] == [0, 1, 0]
    assert test["metric"] == ["numeric"] * 3 and test["id"] == ["00000", "00001", "00002"]  # completed to the schema


def test_an_algorithm_in_one_file_gets_its_config_and_defaults():
    from trl import GRPOConfig

    from rlrefine.training.settings import parse_pipeline

    algorithm = f"{PLUGINS / 'my_algorithm.py'}:GRPO_SHORT"
    args, trl_args, _ = parse_pipeline(["--algorithm", algorithm, "--run_dir", "unused"])
    assert type(trl_args) is GRPOConfig and (trl_args.max_completion_length, trl_args.num_generations) == (24, 4)
    assert trl_args.learning_rate == 1e-4  # the shared RL defaults still apply


def test_an_algorithms_own_settings_live_on_its_config_with_their_defaults(tmp_path):
    """RFT's rounds are ``RFTConfig``'s as PPO's critic settings are ``PPOConfig``'s: parsed there, defaulted there,
    and named as another algorithm's when given to one that has no such setting (flag or config key)."""
    from rlrefine.training.rft import RFTConfig
    from rlrefine.training.settings import PipelineArgs, parse_pipeline

    args, trl_args, _ = parse_pipeline(["--algorithm", "rft", "--rft_rounds", "2"])
    assert type(trl_args) is RFTConfig and (trl_args.rft_rounds, trl_args.rft_samples) == (2, 8)
    assert (trl_args.learning_rate, trl_args.max_steps) == (5e-4, 200)  # RFT's own defaults over the shared ones
    assert not hasattr(args, "rft_rounds") and "rft_rounds" not in PipelineArgs.__dataclass_fields__
    with pytest.raises(UsageError, match=r"--rft_rounds \(a setting of --algorithm rft\)"):
        parse_pipeline(["--rft_rounds", "2"])
    config = tmp_path / "c.yaml"
    config.write_text("algorithm: rloo\nlam: 0.9\n")
    with pytest.raises(UsageError, match=r"unknown config key\(s\): lam \(a setting of --algorithm ppo\)"):
        parse_pipeline(["--config", str(config)])
    with pytest.raises(UsageError, match=r"--nonsense; see"):  # a key no algorithm has is a plain typo
        parse_pipeline(["--nonsense", "1"])


def test_the_pipeline_settings_are_its_concerns_and_sft_shares_data_and_teacher():
    """``PipelineArgs`` is the composition of one dataclass per concern (each field in exactly one), and
    ``rlrefine sft`` parses the same data and teacher concerns (``--domain`` still reads as ``--train_domain``)."""
    from dataclasses import fields

    from rlrefine.core.format import decomposer_instruction
    from rlrefine.core.settings import parse_config
    from rlrefine.training import settings
    from rlrefine.training.sft import SFTArgs

    concerns = [settings.DataArgs, settings.TeacherArgs, settings.DistillStage, settings.RLStage]
    concerns += [settings.EvalStage, settings.RunArgs]
    names = [f.name for c in concerns for f in fields(c)]
    assert sorted(names) == sorted(f.name for f in fields(settings.PipelineArgs)) and len(set(names)) == len(names)
    assert issubclass(SFTArgs, settings.DataArgs) and issubclass(SFTArgs, settings.TeacherArgs)
    from rlrefine.evaluation.evaluate import EvalArgs  # the evaluation concern is rlrefine eval's, prefixed

    shared = {f"eval_{f.name}" for f in fields(EvalArgs)} & {f.name for f in fields(settings.EvalStage)}
    assert shared == {"eval_split", "eval_limit", "eval_solvers", "eval_modes"}
    for flag in ("--domain", "--train_domain"):
        (script,) = parse_config(SFTArgs, [flag, "money", "--instruction", "null"], "rlrefine sft")
        assert (script.train_domain, script.instruction) == ("money", None)
    args = settings.PipelineArgs(train_domain="money", train_limit=5, teacher="oracle", instruction=None)
    assert settings.concern(args, settings.DataArgs) == {"data": "world", "train_limit": 5, "train_domain": "money"}
    paper = decomposer_instruction(3)  # instruction: null is the paper's with the run's cap (the default rewards': 3)
    assert settings.concern(args, settings.TeacherArgs) == {"teacher": "oracle", "instruction": paper}


@pytest.mark.parametrize(
    ("rewards", "asked"),
    [
        (None, "at most 3 sub-questions"),  # the default rewards: the paper's cap
        ([{"name": "solver"}, {"name": "format", "cap": 5}], "at most 5 sub-questions"),
        ([{"name": "solver"}, {"name": "format", "cap": None}], "Break the question into sub-questions"),
        ([{"name": "solver"}], "Break the question into sub-questions"),  # no reward limits the count
    ],
)
def test_the_papers_instruction_asks_for_the_runs_cap_in_every_prompt_of_the_run(rewards, asked):
    """``instruction: null`` is the paper's instruction with the run's cap (``subquestion_cap``), not a constant three:
    the prompts the teacher, SFT, RL and the final evaluation see all come from the run's instruction."""
    from rlrefine.training.rl import train_dataset
    from rlrefine.training.settings import PipelineArgs

    args = PipelineArgs(data="world:small", train_limit=2, instruction=None, rewards=rewards)
    assert asked in args.instruction and ("at most" in args.instruction) == ("at most" in asked)
    assert train_dataset(args)[0]["prompt"][0] == {"role": "system", "content": args.instruction}
    assert PipelineArgs(instruction="", rewards=rewards).instruction == ""  # the tiny students' prompt: none
