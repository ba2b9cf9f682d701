"""Bad input is caught before work starts, through the CLI a user meets it in: one line, exit code 2, and no
half-made run folder; your own JSONL trains and evaluates; a resume is the same run."""

import json
from pathlib import Path

import pytest
import yaml

from rlrefine.commands.cli import main as cli
from rlrefine.core.protocols import UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = "--train_limit 16 --eval_limit 8 --eval_solvers hops=1 --pass_k 2 --per_device_train_batch_size 8"
TINY += " --num_generations 4 --max_completion_length 24 --logging_steps 1"


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _line(row: dict) -> str:
    return json.dumps(row) + "\n"


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no problems in it (the file is empty)"),
        ("\n\n", "no problems in it (the file is empty)"),
        ('{"question": "q ?", "answer": "4"}\n{oops\n', "line 2: not valid JSON"),
        ('["q ?", "4"]\n', "line 1: expected a JSON object, got list"),
        (_line({"question": "q ?"}), "line 1: missing field 'answer'"),
        (_line({"question": "", "answer": 3}), "line 1: missing field 'question'"),
        (_line({"question": "Capital?", "answer": "Paris"}), "line 1: field 'answer' is 'Paris', not a number"),
        (_line({"question": "q", "answer": "4", "metric": "bleu"}), "line 1: unknown metric 'bleu' in field 'metric'"),
        (
            _line({"id": 1, "question": "a", "answer": 1}) + _line({"id": "1", "question": "b", "answer": 2}),
            "line 2: id '1' repeats line 1",
        ),
    ],
)
def test_bad_rows_are_one_line_naming_file_line_and_field(tmp_path, capsys, content, message):
    bad = tmp_path / "mine.jsonl"
    bad.write_text(content)
    assert cli(["eval", "--data", str(bad), "--solvers", "hops=1", "--out", str(tmp_path / "out")]) == 2
    err = _error(capsys)
    assert err.startswith(f"rlrefine eval: error: {bad}") and message in err


def test_bad_row_messages(tmp_path):
    from rlrefine.data import load_splits

    bad = tmp_path / "mine.jsonl"
    bad.write_text(_line({"question": "q ?", "answer": "4"}) + _line({"question": "Capital?", "answer": "Paris"}))
    with pytest.raises(ValueError) as error:
        load_splits(str(bad))
    assert str(error.value) == (
        f"{bad} line 2: field 'answer' is 'Paris', not a number, under the numeric metric "
        '(give the number, or set "metric" to em, f1 or acc)'
    )
    bad.write_text(_line({"question": "Capital?", "answer": "Paris", "metric": "em"}))
    assert load_splits(str(bad))["test"][0]["answer"] == "Paris"


@pytest.mark.slow
def test_own_jsonl_trains_and_evaluates_end_to_end(world_jsonl, tmp_path):
    from rlrefine.train import main

    own_data, run = world_jsonl, tmp_path / "run"
    argv = ["--data", str(own_data), "--run_dir", str(run), "--sft", "{max_steps: 4}", "--max_steps", "2"]
    results = main([*argv, *TINY.split(), "--eval_modes", "static", "dynamic"])  # dynamic cells: their own rows
    static = {"none", "oracle", "teacher", "sft", "rl-grpo"}
    assert {c["decomposer"] for c in results["cells"]} == static | {f"{d} (dynamic)" for d in static}
    assert "oracle (dynamic) | hops=1 | 1.000" in (run / "results.md").read_text()
    assert results["n"] == 8 and (run / "rl" / "config.json").exists()
    mapping = f"{{train: {own_data / 'train.jsonl'}, test: {own_data / 'test.jsonl'}}}"
    out = tmp_path / "eval"
    assert cli(["eval", "--data", mapping, "--decomposers", "oracle", "--solvers", "hops=1", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["cells"][0]["accuracy"] == 1.0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_solvers", "hops=1", "nueral"], "unknown solver 'nueral'; did you mean 'neural'?"),
        (["--teacher", "techer"], "unknown decomposer 'techer'; did you mean 'teacher'?"),
        (["--train_solver", "hops=x"], "solver 'symbolic': hops must be int, got 'x'"),
        (["--eval_split", "dev"], "dataset 'world:small' has no split 'dev'; it has: train, validation, test"),
        (["--sft", "{max_step: 3}"], "unknown sft setting(s): max_step"),
        (["--sft_variant", "sd-x"], "unknown sft_variant 'sd-x'; valid: sd-t, sd-r, oracle"),
        (["--train_domain", "cars"], "dataset 'world:small' has no domain 'cars'; valid: marbles, money"),
        (["--rewards", "[{name: solver, weight: heavy}]"], "reward 'solver': weight must be a number, got 'heavy'"),
    ],
)
def test_every_name_is_checked_before_any_work(tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    assert cli(["train", "--data", "world:small", "--run_dir", str(run), *flags]) == 2
    assert _error(capsys).startswith(f"rlrefine train: error: {message}")
    assert not run.exists()  # nothing was made: the same command, fixed, just runs


def test_world_solvers_refuse_data_without_a_world_at_start(tmp_path, capsys):
    rows = [{"id": str(i), "question": f"What is {i} + 1 ?", "answer": str(i + 1)} for i in range(5)]
    folder = tmp_path / "arith"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(_line(r) for r in rows))
    run = tmp_path / "run"
    assert cli(["train", "--data", str(folder), "--run_dir", str(run), "--teacher", "none"]) == 2
    assert _error(capsys) == (
        f"rlrefine train: error: solver 'hops=1' needs world problems (a 'graph' column); '{folder}' has none: "
        "use a model (hf:, vllm:, openai:) or a plugin that reads the text"
    )
    assert not run.exists()
    assert cli(["eval", "--data", str(folder / "test.jsonl"), "--out", str(tmp_path / "e")]) == 2
    assert (
        "decomposer 'oracle' needs gold sub-questions (a 'subquestions' column); the evaluated data has none"
        in _error(capsys)
    )


def test_failed_cells_carry_their_count_and_first_error(test_rows, tmp_path):
    from rlrefine.evaluation.evaluate import evaluate

    rows = [dict(r) for r in test_rows[:10]]
    for row in rows[3:6]:
        row["graph"] = ""  # the symbolic solver cannot read these three
    results = evaluate(rows, ["oracle"], ["hops=1"], out=tmp_path)
    (cell,) = results["cells"]
    assert cell["errors"] == 3 and cell["first_error"].startswith("ValueError: symbolic solver hops=1 needs world")
    assert f"- oracle x hops=1: 3 of 10, first: {cell['first_error']}" in (tmp_path / "results.md").read_text()


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, capsys):
    from rlrefine.train import prepare_run_dir, same_run
    from rlrefine.training.settings import parse_pipeline

    run = tmp_path / "run"
    argv = ["--data", "world:small", "--run_dir", str(run), "--learning_rate", "0.001"]
    prepare_run_dir(argv, *parse_pipeline(argv))
    (run / "rl.work").mkdir()  # the run began
    config = (run / "config.yaml").read_text()
    changed = [*argv[:-1], "0.002", "--loss_type", "grpo", "--resume"]
    assert cli(["train", *changed]) == 2
    assert _error(capsys) == (
        f"rlrefine train: error: --resume with other settings than {run / 'config.yaml'}: learning_rate, loss_type; "
        f"resume with the same settings (--config {run / 'config.yaml'} --resume) or start a new run (--run_dir NEW, "
        "or --overwrite)"
    )
    assert (run / "config.yaml").read_text() == config  # untouched: it still describes what was trained
    again = ["--config", str(run / "config.yaml"), "--resume"]
    same_run(again, *parse_pipeline(again))  # the same settings: no complaint
    assert prepare_run_dir(again, *parse_pipeline(again)) == run and (run / "config.yaml").read_text() == config


def test_a_folder_holding_only_its_config_is_not_a_run(tmp_path):
    from rlrefine.train import prepare_run_dir
    from rlrefine.training.settings import parse_pipeline

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"learning_rate": 0.5}))  # left by a run that failed at once
    argv = ["--run_dir", str(run)]
    assert prepare_run_dir(argv, *parse_pipeline(argv)) == run
    assert yaml.safe_load((run / "config.yaml").read_text())["learning_rate"] == 1e-4


def test_quick_config_checkpoints_before_it_ends():
    from rlrefine.training.settings import parse_pipeline

    _, trl, _ = parse_pipeline(["--config", str(ROOT / "configs" / "quick.yaml")])
    assert trl.save_steps < trl.max_steps  # a killed quick run resumes RL instead of restarting it


def test_a_solver_on_the_port_of_grpos_vllm_server_is_refused(tmp_path, capsys):
    from rlrefine.train import main

    solver = "openai:m@http://127.0.0.1:8000/v1"
    argv = ["--train_solver", solver, "--use_vllm", "--vllm_mode", "server", "--run_dir", str(tmp_path / "run")]
    with pytest.raises(UsageError, match=r"^train_solver is served on port 8000, which GRPO's vLLM server mode uses"):
        main(argv)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize(
    "flags, env, why",
    [
        (["--train_solver", "vllm:m", "--use_vllm"], {}, "train_solver. beside TRL's colocated vLLM"),
        (["--eval_solvers", "vllm:m", "hops=1"], {"WORLD_SIZE": "2"}, "eval_solvers. on several processes"),
        (["--teacher", "vllm:a", "--train_solver", "vllm:b"], {}, "teacher, train_solver. next to another vllm"),
    ],
)
def test_in_process_vllm_engines_that_would_collide_are_refused(tmp_path, monkeypatch, flags, env, why):
    from rlrefine.training.settings import parse_pipeline, refuse_clashes

    args, trl_args, _ = parse_pipeline([*flags, "--run_dir", str(tmp_path / "run")])
    for key, value in env.items():  # as a multi-process launch sets it
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageError, match=rf"^an in-process vllm: engine \({why}.*name it as openai:MODEL@"):
        refuse_clashes(args, trl_args)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    refuse_clashes(*parse_pipeline(["--train_solver", "vllm:m"])[:2])  # one engine, one process, no TRL vLLM: fine


@pytest.mark.parametrize("engine", ["DEEPSPEED", "FSDP"])
def test_ppo_under_deepspeed_or_fsdp_is_refused_in_one_line(tmp_path, monkeypatch, engine):
    from rlrefine.training.settings import parse_pipeline, refuse_clashes

    args, trl_args, _ = parse_pipeline(["--algorithm", "ppo", "--run_dir", str(tmp_path / "run")])
    grpo = parse_pipeline(["--algorithm", "grpo"])[:2]
    monkeypatch.setenv(f"ACCELERATE_USE_{engine}", "true")  # what accelerate launch sets for zero2/zero3/fsdp2.yaml
    with pytest.raises(UsageError, match=rf"^PPO's critic is not prepared for {engine} .*multi_gpu.yaml \(DDP\)"):
        refuse_clashes(args, trl_args)
    refuse_clashes(*grpo)  # GRPO shards as TRL does
