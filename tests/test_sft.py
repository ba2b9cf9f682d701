"""Distillation with TRL's SFTTrainer on a tiny model built in this session (fast), and the CLI around it."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import changed_tensors
from trl import SFTConfig, SFTTrainer

from rlrefine.commands.cli import main
from rlrefine.engines.models import load_tokenizer
from rlrefine.training.distill import decomposer_dataset

FAST = [
    "--max_steps",
    "12",
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "3e-3",
    "--logging_steps",
    "2",
    "--warmup_steps",
    "0",
    "--train_limit",
    "96",
    "--eval_limit",
    "20",
    "--data",
    "world:small",
]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "decomposer"
    assert (
        main(
            ["sft", "--variant", "oracle", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), *FAST]
        )
        == 0
    )
    return out


def test_sft_lowers_loss_and_changes_parameters(trained, tiny_model_dir):
    history = [
        h["loss"] for h in json.loads((trained / "eval.json").read_text())["training"]["log_history"] if "loss" in h
    ]
    assert history[-1] < history[0]
    assert changed_tensors(tiny_model_dir, trained)
    card = (trained / "README.md").read_text()
    assert "oracle" in card and "Validation (20 problems)" in card and "hops=1" in card


def test_completion_only_masking(tiny_model_dir, world, tmp_path):
    data = decomposer_dataset(list(world["train"])[:4], "oracle")
    tok = load_tokenizer(tiny_model_dir)
    trainer = SFTTrainer(
        model=str(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path), report_to="none", max_length=256, bf16=False),
        train_dataset=data,
        processing_class=tok,
    )
    for example, source in zip(trainer.train_dataset, data):
        ids, labels = example["input_ids"], example["labels"]
        trained_on = [label != -100 for label in labels]
        assert (
            tok.decode([t for t, on in zip(ids, trained_on) if on]).strip()
            == source["completion"][0]["content"] + "<|end|>"
        )
        assert trained_on == sorted(trained_on)  # the prompt first (no loss), then the completion


def test_saved_decomposer_runs_through_eval(trained, tmp_path):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--data",
                "world:small",
                "--limit",
                "20",
                "--decomposers",
                f"student={trained}",
                "oracle",
                "--solvers",
                "hops=1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [c["decomposer"] for c in cells] == ["student", "oracle"] and cells[0]["n"] == 20
    assert cells[0]["tokens"]["decomposer_out"] > 0 and cells[0]["oracle_match"] is not None


def test_a_tiny_time_budget_stops_sft_after_one_step_and_still_publishes(tiny_model_dir, tmp_path):
    out = tmp_path / "budget"
    argv = ["sft", "--variant", "oracle", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    assert main([*argv, *FAST[2:], "--max_steps", "10000", "--max_minutes", "1e-9"]) == 0
    card = json.loads((out / "eval.json").read_text())
    assert card["training"]["steps"] == 1 and card["validation"]["n"] == 20  # published, with its card
    assert (out / "config.json").exists() and not (tmp_path / "budget.work").exists()


def test_publish_survives_what_a_kill_mid_swap_leaves(trained, tmp_path):
    from rlrefine.training.trainers import publish

    out = tmp_path / "model"
    publish(trained, out, "first")
    (tmp_path / ".model.old" / "stale").mkdir(parents=True)  # a run killed between its two renames
    publish(trained, out, "second", {"training": {}})
    assert (out / "README.md").read_text() == "second" and (out / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_model_eval_cache_keys_on_weights_prompt_and_length(trained, tmp_path):
    from rlrefine.decomposers import make_decomposer
    from rlrefine.evaluation.evaluate import cache_name

    def student(path, **settings):
        return make_decomposer({"name": "model", "path": str(path), **settings})

    plain = cache_name(student(trained))
    assert plain == cache_name(student(trained))
    assert plain != cache_name(student(trained, instruction=None))  # the paper's prompt: other text
    assert plain != cache_name(student(trained, max_tokens=8))
    copy = tmp_path / "student"
    shutil.copytree(trained, copy)
    before = cache_name(student(copy))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # retrained in place (same path, new weights file)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))
    assert cache_name(student(copy)) != before


def test_refuses_to_overwrite_a_model(trained, capsys):
    assert main(["sft", "--output_dir", str(trained), *FAST]) == 2
    assert "already holds a model; pass --overwrite" in capsys.readouterr().err


def test_missing_data_fails_before_building_a_model(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"question": "q", "context": ""}) + "\n")
    assert main(["sft", "--data", str(empty), "--output_dir", str(tmp_path / "o")]) == 2
    assert "empty.jsonl line 1: missing field 'answer'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_neural_solver_training_and_use(tiny_model_dir, tmp_path):
    out = tmp_path / "solver"
    assert (
        main(
            [
                "sft",
                "--role",
                "solver",
                "--variant",
                "se-a",
                "--model_name_or_path",
                str(tiny_model_dir),
                "--output_dir",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())["validation"]
    assert {c["solver"] for c in report["cells"]} == {f"model:{out}"}
    assert [c["decomposer"] for c in report["cells"]] == ["oracle", "teacher", "none"] and report["n"] == 20
    from rlrefine.data import load_split
    from rlrefine.evaluation.evaluate import evaluate

    rows = list(load_split("world:small", "validation", 20))  # the card's numbers are this model's, on those rows
    again = evaluate(rows, ["oracle", "teacher", "none"], [f"model:{out}"], progress=False)["cells"]
    assert [c["accuracy"] for c in again] == [c["accuracy"] for c in report["cells"]]
    assert [c["mean_subquestions"] for c in again] == [c["mean_subquestions"] for c in report["cells"]]
    assert all(c["tokens"]["solver_out"] > 0 and c["errors"] == 0 for c in again)  # the trained model wrote them


@pytest.mark.slow
def test_killed_training_resumes(tiny_model_dir, tmp_path, kill_at_checkpoint):
    out = tmp_path / "resumed"
    cmd = [
        sys.executable,
        "-m",
        "rlrefine.commands.cli",
        "sft",
        "--variant",
        "oracle",
        "--model_name_or_path",
        str(tiny_model_dir),
        "--output_dir",
        str(out),
        "--data",
        "world:small",
        "--train_limit",
        "96",
        "--per_device_train_batch_size",
        "8",
        "--save_steps",
        "3",
        "--logging_steps",
        "1",
        "--eval_limit",
        "0",
    ]
    work = tmp_path / "resumed.work"
    step = int(kill_at_checkpoint([*cmd, "--max_steps", "2000"], work).name.split("-")[1])
    # The kill can land mid-save; make that case certain: a newer checkpoint whose state file is torn.
    torn = work / "checkpoint-999"
    torn.mkdir(exist_ok=True)
    (torn / "trainer_state.json").write_text('{"global_step": 999, "log_hi')
    done = subprocess.run([*cmd, "--max_steps", str(step + 3)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads((out / "eval.json").read_text())["training"]
    assert facts["resumed_from"] and facts["resumed_from"].endswith(f"checkpoint-{step}")
    assert facts["steps"] == step + 3
    assert not work.exists()


def test_dtype_reaches_the_trained_and_saved_model(tiny_model_dir, tmp_path):
    """TRL's ``dtype`` applies to the SFT stage as to RL: the student trains and ships in it."""
    from safetensors import safe_open

    out = tmp_path / "bf16"
    argv = ["sft", "--variant", "oracle", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    assert main([*argv, "--dtype", "bfloat16", *FAST]) == 0
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert {str(weights.get_tensor(k).dtype) for k in weights.keys()} == {"torch.bfloat16"}


def test_lora_is_a_switch_and_ships_merged(tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    argv = ["sft", "--variant", "oracle", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    assert main([*argv, "--use_peft", "--lora_r", "4", "--lora_alpha", "8", *FAST]) == 0
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert json.loads((out / "eval.json").read_text())["training"]["lora"] is True
    assert changed_tensors(tiny_model_dir, out)


def test_fused_head_scores_labelled_tokens_only_with_the_same_loss_and_gradient(tiny_model_dir):
    """TRL's fused LM head scores every position off CUDA; ``trainers.score_labelled_tokens_only`` makes it score the
    labelled ones on a CPU too (the cost of a real model's SFT step halves). Same log-probabilities, loss and
    gradient as TRL's own path, which is reproduced here by handing back its original device test."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.kernels.chunked_logprob import _use_triton as trl_device_test

    from rlrefine.training.trainers import score_labelled_tokens_only

    assert score_labelled_tokens_only() and trl_utils._use_triton(torch.device("cpu"))
    patched = trl_utils._use_triton
    torch.manual_seed(0)
    ids = torch.randint(3, 40, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :7] = -100  # a prompt: no labels
    labels[2, 9] = -100  # a hole inside the completion
    results = []
    for device_test in (trl_device_test, patched):
        trl_utils._use_triton = device_test
        try:
            model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
            trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
            out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
            out.log_probs.sum().backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results.append((out.log_probs.detach(), out.entropy.detach(), grads))
        finally:
            trl_utils._use_triton = patched
    (full, full_entropy, full_grad), (compact, compact_entropy, compact_grad) = results
    scored = labels[:, 1:] != -100
    assert scored.sum() == 11 and (compact[~scored] == 0).all() and (compact[scored] != 0).all()
    torch.testing.assert_close(compact, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compact_entropy[scored], full_entropy[scored], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compact_grad, full_grad, rtol=1e-4, atol=1e-6)
    reference = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    expected = reference.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(compact[scored], expected[scored], rtol=1e-4, atol=1e-5)
