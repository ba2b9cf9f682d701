import pytest
import torch

from rlrefine.core.format import decomposer_messages
from rlrefine.engines.models import build_model, build_tokenizer, generate, load


def test_tokenizer_round_trip_and_chat_template(tiny_model_dir, test_rows):
    _, tok = load(tiny_model_dir)
    for text in [test_rows[0]["context"], "Q1: How many cards does Pia have ?\nQ2: x", "naïve ünïcode 🙂 42"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]).strip() == text
    assert tok.padding_side == "left" and tok.pad_token == "<|pad|>" and tok.eos_token == "<|end|>"
    messages = decomposer_messages("Ava has 3 marbles .", "How many marbles does Ava have ?", "")
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": "Q1: a ?"}])["input_ids"]
    assert full[: len(prompt)] == prompt and full[-1] == tok.eos_token_id  # TRL's completion-only loss needs this


def test_model_reloads_offline(tiny_model_dir):  # conftest sets HF_HUB_OFFLINE=1 before any hub import
    model, tok = load(tiny_model_dir)
    assert model.config.model_type == "llama" and not model.training
    ids = tok("Ava has 3 marbles .", return_tensors="pt")
    assert torch.isfinite(model(**ids).logits).all()


def test_batched_generation_matches_one_by_one(test_rows):
    """Left padding must not change greedy outputs: batched == one at a time. The bundled pretrained base writes
    real, prompt-dependent text (an untrained model writes nothing, which would match trivially)."""
    model, tok = load("base", dtype="float32", device="cpu")
    conversations = [decomposer_messages(r["context"], r["question"], "") for r in test_rows[:6]]
    batched = generate(model, tok, conversations, max_new_tokens=12, batch_size=6)
    single = [generate(model, tok, [c], max_new_tokens=12)[0] for c in conversations]
    texts = [g[0].text for g in batched]
    assert all(texts) and len(set(texts)) > 1
    assert texts == [g[0].text for g in single]
    assert [g[0].completion_tokens for g in batched] == [g[0].completion_tokens for g in single]
    sampled = generate(model, tok, conversations[:2], n=3, do_sample=True, max_new_tokens=8, seed=0)
    assert [len(g) for g in sampled] == [3, 3] and all(g.completion_tokens <= 8 for gs in sampled for g in gs)


def test_build_is_deterministic():
    texts = ["Ava has 3 marbles .", "Compared to Ava , Ben has 2 more marbles ."] * 10
    a, b = (
        build_model(build_tokenizer(texts, 300), 32, 1, 2, seed=3),
        build_model(build_tokenizer(texts, 300), 32, 1, 2, seed=3),
    )
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_frozen_models_are_loaded_once_while_held(tiny_model_dir, tmp_path):
    import gc
    import shutil
    import weakref

    from rlrefine.decomposers import make_decomposer
    from rlrefine.solvers import make_solver

    solver = make_solver({"backend": "hf", "model": str(tiny_model_dir), "dtype": "float32", "device": "cpu"})
    decomposer = make_decomposer(f"{{backend: hf, model: {tiny_model_dir}, dtype: float32, device: cpu}}")
    assert decomposer.engine.model is solver.engine.model  # a reward's solver and an eval's: one copy in memory
    assert load(tiny_model_dir, dtype="bfloat16", device="cpu")[0] is not solver.engine.model  # other settings: another
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert load(copy, dtype="float32", device="cpu")[0] is not solver.engine.model  # other weights: another
    held = weakref.ref(solver.engine.model)
    del solver, decomposer
    gc.collect()
    assert held() is None  # nothing holds it: the memory is freed, not kept by the cache


def test_generation_stops_at_the_models_own_end_of_turn_token(tiny_model_dir, test_rows):
    """A chat model's generation_config may list an end-of-turn token besides the tokenizer's EOS."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # a private copy: its config is changed below
    tok = load(tiny_model_dir)[1]
    conversation = [decomposer_messages(test_rows[0]["context"], test_rows[0]["question"], "")]
    prompt = tok.apply_chat_template(conversation[0], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    first = model.generate(**prompt, max_new_tokens=1, do_sample=False)[0, -1].item()  # what it says first
    model.generation_config.eos_token_id = [tok.eos_token_id, first]
    reply = generate(model, tok, conversation, max_new_tokens=24)[0][0]
    assert reply.finished and reply.completion_tokens == 1


@pytest.mark.slow  # a new interpreter, with its own process group
def test_a_frozen_model_computes_as_on_one_process_when_loaded_as_fsdps_second_process(tiny_model_dir):
    """Under FSDP with CPU-RAM-efficient loading (``configs/accelerate/fsdp2.yaml``), transformers may load a model
    on processes other than the first with placeholders for FSDP to fill in from the first: only the model FSDP wraps
    ever is. A frozen solver or an evaluation model (``load``) must compute there as it does alone. (With transformers
    5.25 it does: the weights and the rotary buffers load on every process; this test says when that changes.)"""
    import subprocess
    import sys

    script = f"""
import os, torch, torch.distributed as dist
from transformers import AutoModelForCausalLM
from rlrefine.engines.models import load
path = {str(tiny_model_dir)!r}
ids = torch.tensor([[5, 17, 42, 9, 3, 77]])
def logits(model):
    with torch.no_grad():
        return model(input_ids=ids).logits
alone = logits(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))
os.environ.update(ACCELERATE_USE_FSDP="true", FSDP_CPU_RAM_EFFICIENT_LOADING="true", LOCAL_RANK="1")
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
from transformers.distributed.fsdp import is_fsdp_enabled
from transformers.distributed.utils import is_local_dist_rank_0
print("second", is_fsdp_enabled() and not is_local_dist_rank_0())
print("same", torch.equal(logits(load(path, dtype=torch.float32, device="cpu")[0]), alone))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-4:] == ["second", "True", "same", "True"], out.stdout  # loaded as FSDP's second process
