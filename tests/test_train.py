"""RL refinement through TRL on the tiny model: GRPO, RLOO, RFT; resume; two processes; the quick config."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, changed_tensors, free_port

from rlrefine.commands.cli import main as cli
from rlrefine.train import main, parse_pipeline

TINY_EVAL = ["--data", "world:small", "--eval_limit", "10", "--eval_solvers", "hops=1", "--pass_k", "2"]
TINY_GEN = ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "24"]
TINY_GEN += ["--logging_steps", "1", "--learning_rate", "1e-3"]
TINY_DATA = [*TINY_EVAL, "--train_limit", "32"]
TINY_RL = [*TINY_DATA, *TINY_GEN]
TWO_REWARDS = '[{"name": "solver"}, {"name": "token_cost", "per_token": 0.01}]'  # lengths differ: never all-equal


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_three_rl_steps_change_the_policy(tiny_decomposer, tmp_path, algorithm):
    run = tmp_path / algorithm
    rewards = '[{"name": "solver", "weight": 2.0}, {"name": "token_cost", "per_token": 0.01, "weight": 0.5}]'
    argv = f"--algorithm {algorithm} --decomposer {tiny_decomposer} --run_dir {run} --max_steps 3".split()
    results = main([*argv, "--rewards", rewards, *TINY_RL])
    assert changed_tensors(tiny_decomposer, run / "rl")
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 3 and 0 < facts["reward_share"] < 1
    assert set(facts["reward_seconds"]) == {"solver[hops=1]", "token_cost"}
    logged = json.loads((run / "rl" / "eval.json").read_text())["log_history"]
    assert any("solver[hops=1]/accuracy" in h for h in logged)
    steps = [h for h in logged if "rewards/solver[hops=1]/mean" in h]
    assert len(steps) == 3
    for h in steps:  # the config's weights reached TRL: its reward is the weighted sum of the rewards' means
        weighted = 2.0 * h["rewards/solver[hops=1]/mean"] + 0.5 * h["rewards/token_cost/mean"]
        assert h["reward"] == pytest.approx(weighted, abs=1e-5) and h["rewards/token_cost/mean"] < 0
    names = {c["decomposer"] for c in results["cells"]}
    assert names == {"none", "oracle", "teacher", "sft", f"rl-{algorithm}"}
    assert (run / "results.md").exists() and (run / "config.yaml").exists() and (run / "report.png").exists()


def test_one_rft_round(tiny_decomposer, tmp_path):
    run = tmp_path / "rft"
    main(
        [
            "--algorithm",
            "rft",
            "--decomposer",
            str(tiny_decomposer),
            "--run_dir",
            str(run),
            "--rft_rounds",
            "1",
            "--rft_problems",
            "16",
            "--rft_samples",
            "4",
            "--max_steps",
            "3",
            "--train_solver",
            "hops=1",
            "--rewards",
            '[{"name": "solver"}]',
            *TINY_DATA,
        ]
    )
    assert changed_tensors(tiny_decomposer, run / "rl")
    rounds = json.loads((run / "rl" / "eval.json").read_text())["training"]["rounds"]
    assert rounds[0]["kept"] > 0 and rounds[0]["steps"] == 3


def test_lora_in_the_rl_stage_trains_adapters_and_ships_them_merged(tiny_decomposer, tmp_path):
    run = tmp_path / "lora"
    argv = ["--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--max_steps", "2", "--rewards", TWO_REWARDS]
    argv += ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    main([*argv, *TINY_RL])
    out = run / "rl"
    assert (out / "model.safetensors").exists() and not list(out.glob("adapter_*"))  # a plain folder, merged
    changed = changed_tensors(tiny_decomposer, out)  # the same tensor names, and only the adapted ones moved
    assert changed and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed), changed


def test_rlrefine_train_with_a_tiny_rl_budget_stops_early_and_publishes(tiny_model_dir, world, tmp_path, capsys):
    """Through the ``rlrefine train`` entry point, SFT included, on one domain: a budget far below one step stops RL
    after its first step (of 50), and the run still publishes its model and writes its results."""
    run = tmp_path / "budget"
    argv = ["train", "--base_model", str(tiny_model_dir), "--sft", "{max_steps: 2, per_device_train_batch_size: 8}"]
    argv += ["--train_domain", "money", "--run_dir", str(run), "--rl_minutes", "1e-6", "--max_steps", "50"]
    assert cli([*argv, *TINY_EVAL, *TINY_GEN]) == 0
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 1 and (run / "rl" / "config.json").exists() and not (run / "rl.work").exists()
    results = json.loads((run / "results.json").read_text())
    assert {c["decomposer"] for c in results["cells"]} == {"none", "oracle", "teacher", "sft", "rl-grpo"}
    assert "| rl-grpo |" in capsys.readouterr().out and (run / "results.md").exists()
    sft = json.loads((run / "sft" / "eval.json").read_text())["training"]  # SD-T keeps every money problem, only
    assert sft["examples"] == sum(r["domain"] == "money" for r in world["train"]) < len(world["train"])


def test_rft_under_a_tiny_budget_runs_one_short_round_and_publishes(tiny_decomposer, tmp_path):
    run = tmp_path / "rft"
    argv = ["--algorithm", "rft", "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--rft_rounds", "3"]
    argv += ["--rft_problems", "16", "--rft_samples", "4", "--max_steps", "10000", "--rl_minutes", "1e-9"]
    results = main([*argv, "--rewards", '[{"name": "solver"}]', *TINY_DATA])
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert [r["round"] for r in facts["rounds"]] == [0] and 0 < facts["rounds"][0]["steps"] < 10000
    assert (run / "rl" / "config.json").exists() and ("rl-rft", "hops=1") in {
        (c["decomposer"], c["solver"]) for c in results["cells"]
    }


def test_killed_rft_resumes_after_its_last_finished_round(tiny_decomposer, tmp_path, monkeypatch):
    import rlrefine.training.rft

    run, real, calls = tmp_path / "rft", rlrefine.training.rft.collect, []

    def collect(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:  # the run dies while sampling round 1
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rlrefine.training.rft, "collect", collect)
    argv = ["--algorithm", "rft", "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--rft_rounds", "2"]
    argv += ["--rft_problems", "16", "--rft_samples", "4", "--max_steps", "2", "--rewards", '[{"name": "solver"}]']
    with pytest.raises(KeyboardInterrupt):
        main([*argv, *TINY_DATA])
    finished = json.loads((run / "rl.work" / "rounds.json").read_text())
    assert [r["round"] for r in finished] == [0]
    main([*argv, "--resume", *TINY_DATA])
    assert calls[2] == run / "rl.work" / "round-0" / "model"  # round 1 starts from round 0's model, not afresh
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    rounds = facts["rounds"]
    assert rounds[0] == finished[0] and [r["round"] for r in rounds] == [0, 1] and len(calls) == 3
    assert facts["rl_minutes"] * 60 > rounds[0]["seconds"] > 0  # the killed run's finished round counts too
    assert not (run / "rl.work").exists()


def test_rl_prompts_hold_the_training_domain_only(world):
    from rlrefine.core.format import decomposer_messages
    from rlrefine.training.rl import train_dataset
    from rlrefine.training.settings import PipelineArgs

    prompts = train_dataset(PipelineArgs(data="world:small", train_domain="money"))
    money = [r for r in world["train"] if r["domain"] == "money"]
    assert prompts["id"] == [r["id"] for r in money] and 0 < len(money) < len(world["train"])
    assert prompts["solution"] == prompts["answer"] == [r["answer"] for r in money]  # TRL's rewards read 'solution'
    assert prompts[0]["prompt"] == decomposer_messages(money[0]["context"], money[0]["question"], "")


def test_config_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"unknown algorithm 'ppx'; did you mean 'ppo'\? valid: grpo, ppo, rft, rloo",
    ):
        parse_pipeline(["--algorithm", "ppx"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: grpo\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown config key\\(s\\): learning_rat"):
        parse_pipeline(["--config", str(bad)])
    with pytest.raises(ValueError, match="--rewards: not valid YAML/JSON"):
        parse_pipeline(["--rewards", "[{name: solver"])
    inline = parse_pipeline(["--rewards", '[{name: solver}, {"name": "format"}]', "--sft", "{max_steps: 5}"])[0]
    assert inline.rewards == [{"name": "solver"}, {"name": "format"}] and inline.sft == {"max_steps": 5}
    with pytest.raises(ValueError, match="^unknown flag.s. or stray value.s.: --max_step; see rlrefine train --help$"):
        parse_pipeline(["--max_step", "3"])  # flags are spelled in full: no silent prefix match of --max_steps
    assert (
        parse_pipeline(["--instruction", "null"])[0].instruction is None
    )  # a flag reads like YAML: the paper's prompt
    assert parse_pipeline(["--instruction", ""])[0].instruction == ""
    pipeline, trl, _ = parse_pipeline(["--config", str(ROOT / "configs" / "quick.yaml"), "--loss_type", "dr_grpo"])
    assert trl.loss_type == "dr_grpo" and trl.max_steps == 20 and pipeline.sft == {"max_steps": 120}
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        main(
            [
                "--decomposer",
                "x",
                "--run_dir",
                str(tmp_path / "r"),
                "--rewards",
                '[{"name": "nope"}]',
                "--max_steps",
                "1",
            ]
        )


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "run" / "sft.work").mkdir(parents=True)  # a run that began
    (tmp_path / "run" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):  # tiny settings, should it not fail
        main(
            ["--run_dir", str(tmp_path / "run"), "--data", "world:small", "--max_steps", "1", "--sft", "{max_steps: 1}"]
        )


@pytest.mark.slow
def test_two_processes_on_cpu(tiny_decomposer, tmp_path):
    """configs/accelerate/multi_gpu.yaml rehearsed: with two processes and bf16 off it runs two gloo processes on a CPU
    (the same as `--multi_gpu --num_processes 2`; `--cpu` would run one)."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()  # accelerate's default 29500 may be taken by another job
    cmd = [
        sys.executable,  # this interpreter's accelerate, whether or not its venv is on PATH
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "multi_gpu.yaml"),
        "--main_process_port",
        str(port),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        str(ROOT / "rlrefine" / "train.py"),
        "--decomposer",
        str(tiny_decomposer),
        "--run_dir",
        str(run),
        "--max_steps",
        "2",
        *TINY_RL,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 2 and facts["num_processes"] == 2
    # With SFT: the teacher data is built once, by the main process (teacher requests = rows, not rows x processes),
    # and the evaluation runs on the main process alone, outlasting the process-group timeout: 20 s of solver time
    # against a 5 s timeout (the other process used to wait for it at a barrier and kill the job).
    plugins, log = ROOT / "tests" / "plugins", tmp_path / "teacher.log"
    teacher = json.dumps({"name": f"{plugins / 'counting_teacher.py'}:Counting", "log": str(log)})
    slow = json.dumps({"name": f"{plugins / 'slow_solver.py'}:Slow", "seconds": 4})
    again = [*cmd[: cmd.index("--decomposer")], "--run_dir", str(tmp_path / "sft"), *cmd[cmd.index("--max_steps") :]]
    again += ["--base_model", str(tiny_decomposer), "--sft", "{max_steps: 2, per_device_train_batch_size: 8}"]
    again += ["--teacher", teacher, "--ddp_timeout", "5", "--eval_solvers", slow, "--eval_limit", "4", "--pass_k", "1"]
    done = subprocess.run(again, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    asked = [line.split() for line in log.read_text().splitlines()]
    assert {rank for rank, _ in asked} == {"0"} and len(asked) == 32 + 4  # the training rows once, then the eval's
    cells = json.loads((tmp_path / "sft" / "results.json").read_text())["cells"]
    assert {c["solver"] for c in cells} == {"slow"} and len(cells) == 5 and all(c["errors"] == 0 for c in cells)


@pytest.mark.slow
def test_a_quick_run_repeats_from_its_config_yaml_and_reports(tmp_path):
    """configs/quick.yaml, made smaller by flags (the config as written is rehearsed in test_configs, and a run at its
    full size took 84 s of the suite): the run's config.yaml repeats it, and the cross-run report reads it."""
    quick, run = str(ROOT / "configs" / "quick.yaml"), str(tmp_path / "quick")
    smaller = ["--sft", "{max_steps: 8}", "--max_steps", "2", "--train_limit", "64", "--eval_limit", "40"]
    smaller += ["--eval_solvers", "hops=1", "hops=2", "--pass_k", "2"]
    results = main(["--config", quick, "--run_dir", run, *smaller])
    acc = {(c["decomposer"], c["solver"]): c["accuracy"] for c in results["cells"]}
    assert acc["oracle", "hops=1"] >= 0.98 and ("rl-grpo", "hops=1") in acc
    assert set(results["pass_at_k"]) == {"sft", "rl-grpo"}
    # the run's config.yaml repeats it: same pipeline, TRL and model settings (overwrite/resume are left out)
    saved = parse_pipeline(["--config", str(tmp_path / "quick" / "config.yaml")])
    given = parse_pipeline(["--config", quick, "--run_dir", run, *smaller])
    assert saved[0] == given[0] and saved[2] == given[2] and saved[1].to_dict() == given[1].to_dict()
    assert (saved[1].per_device_train_batch_size, saved[0].sft) == (16, {"max_steps": 8})  # the file's, and the flags'
    # the cross-run report reads finished runs (here the same run twice: one group of two "seeds")
    out = tmp_path / "report"
    assert cli(["report", run, run, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert f"| rl-grpo | {acc['rl-grpo', 'hops=1']:.3f} |" in text and "| grpo | quick, quick (2) | 40 |" in text
    assert (out / "curves.png").stat().st_size > 0 and "different problems" not in text


@pytest.mark.slow  # a new interpreter imports torch and TRL: the fast tier runs train.py by path in test_layout
def test_train_script_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "rlrefine" / "train.py"), "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "rlrefine train: error: unknown config key(s): learning_rat"


def test_students_are_evaluated_with_as_many_tokens_as_rl_let_them_write(tiny_model_dir, tmp_path, monkeypatch):
    """The evaluation must not cut a decomposition RL trained the policy to write: students decode with RL's
    max_completion_length (and never fewer than the student default, 64)."""
    from types import SimpleNamespace

    import rlrefine.decomposers as decomposers
    from rlrefine.train import eval_stage
    from rlrefine.training.settings import PipelineArgs

    built, make = [], decomposers.make_decomposer

    def recording(spec):
        made = make(spec)
        built.append(made)
        return made

    monkeypatch.setattr(decomposers, "make_decomposer", recording)
    args = PipelineArgs(data="world:small", eval_limit=2, eval_solvers=["hops=1"], pass_k=1)
    for length, expected in ((128, 128), (32, 64)):
        built.clear()
        trl_args = SimpleNamespace(max_completion_length=length, seed=0)
        eval_stage(args, trl_args, tmp_path / f"run-{length}", tiny_model_dir, tiny_model_dir)
        students = {d.name: d.engine.max_tokens for d in built if d.name in ("sft", "rl-grpo")}
        assert students == {"sft": expected, "rl-grpo": expected}


def test_pass_k_zero_evaluates_without_sampling(tiny_model_dir, tmp_path):
    """``pass_k: 0`` leaves pass@k out (a real student's sampling costs minutes on a CPU); the matrix is whole."""
    from types import SimpleNamespace

    from rlrefine.train import eval_stage
    from rlrefine.training.settings import PipelineArgs

    args = PipelineArgs(data="world:small", eval_limit=2, eval_solvers=["hops=1"], pass_k=0)
    results = eval_stage(
        args, SimpleNamespace(max_completion_length=32, seed=0), tmp_path, tiny_model_dir, tiny_model_dir
    )
    assert results["pass_at_k"] == {} and {"sft", "rl-grpo"} <= {c["decomposer"] for c in results["cells"]}
    assert "pass@" not in (tmp_path / "results.md").read_text()
