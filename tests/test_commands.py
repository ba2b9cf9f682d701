"""The commands and scripts not tested elsewhere, on tiny settings: ``rlrefine pretrain``, the paper's Table 1 script
(``experiments/distill_which_part.py --quick``) and the ``hf`` throughput benchmark (``experiments/bench_hf_solver.py``)."""

import json
import math
import runpy
import sys

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main


def _script(monkeypatch, name: str, *argv: str) -> None:
    """Run an experiments/ script in this process, as ``python experiments/NAME argv...`` would."""
    monkeypatch.setattr(sys, "argv", [name, *argv])
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))  # as running it by path would: its helpers import
    runpy.run_path(str(ROOT / "experiments" / name), run_name="__main__")


@pytest.mark.slow
def test_pretrain_writes_a_base_model_that_loads_with_its_probes(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from rlrefine.engines.models import load_tokenizer

    out = tmp_path / "base"
    argv = ["pretrain", "--out", str(out), "--documents", "60", "--vocab_size", "300", "--hidden", "32"]
    argv += ["--layers", "1", "--heads", "2", "--short_steps", "2", "--max_steps", "5", "--batch_size", "4"]
    assert main(argv) == 0
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), load_tokenizer(out)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 1) and len(tokenizer) <= 300
    facts = json.loads((out / "pretrain.json").read_text())
    assert list(facts["probes"]) == ["init", "short", "mixed"]  # before, and after each curriculum phase
    for probe in facts["probes"].values():
        assert set(probe) == {"name_copy_loss", "parent_lookup_loss"} and all(math.isfinite(v) for v in probe.values())
    assert "2 steps on short stories (depth 1-2), then 3 on all kinds" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no work or staging folder left
    capsys.readouterr()
    assert main(argv) == 2 and "already holds a model; pass --overwrite" in capsys.readouterr().err


def test_pretraining_text_never_holds_an_evaluated_problem():
    from rlrefine.data.world import generate, world_config
    from rlrefine.training.pretrain import SHORT, documents

    docs = documents(SHORT, 30, 0, set())
    story = docs[0].split("\nQuestion:")[0]
    assert story not in {d.split("\nQuestion:")[0] for d in documents(SHORT, 30, 0, {story})}
    assert all("Q1:" not in d and "\nEvidence: " in d for d in docs)  # reading questions, never a decomposition
    held_out = generate(world_config("default"))
    contexts = {r["context"] for split in ("validation", "test") for r in held_out[split]}
    assert not contexts & {d.split("\nQuestion:")[0] for d in docs}


def test_bench_hf_solver_on_tiny_settings(monkeypatch, capsys):
    argv = ["--problems", "4", "--max_new_tokens", "4", "--batch_size", "4", "--hidden", "16", "--layers", "1"]
    _script(monkeypatch, "bench_hf_solver.py", *argv)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["problems"], report["model"], report["max_new_tokens"]) == (4, "llama 1x16", 4)
    assert report["batched_tok_per_s"] > 0 and report["loop_tok_per_s"] > 0 and report["speedup"] > 0


@pytest.mark.slow  # two SFT and two GRPO runs
def test_bench_real_step_measures_both_settings_and_leaves_trl_as_it_found_it(monkeypatch, capsys, tiny_model_dir):
    import torch
    import trl.trainer.utils as trl_utils
    from trl.extras.profiling import ProfilingContext

    logged = ProfilingContext._log_metrics
    _script(monkeypatch, "bench_real_step.py", "--model", str(tiny_model_dir), "--steps", "2", "--rounds", "1")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for setting in ("before", "after"):
        for key in ("sft_", "grpo_", "grpo_{}_generation", "grpo_{}_forward"):
            name = key.format(setting) if "{}" in key else key + setting
            assert report[name] > 0, name
        assert report["grpo_" + setting] > report[f"grpo_{setting}_forward"]  # backward and the optimizer are the rest
    assert report["sft_speedup"] > 0 and report["grpo_speedup"] > 0
    assert ProfilingContext._log_metrics is logged and trl_utils._use_triton(torch.device("cpu"))


@pytest.mark.slow
def test_the_papers_table_1_script_on_its_quick_settings(tmp_path, monkeypatch, capsys):
    out = tmp_path / "table1"
    _script(monkeypatch, "distill_which_part.py", "--out", str(out), "--quick", "--seeds", "0")
    lines = (out / "table.md").read_text().splitlines()
    assert lines[0] == "# Distill the decomposer or the solver? (20 test problems, seed 0)"
    labels = [line.split(" | ")[0].lstrip("| ") for line in lines[4:11]]
    assert labels == [
        "teacher / teacher-solver (hops=2)",
        "teacher / deployed solver (hops=1)",
        "SD-T / hops=1",
        "SD-R / hops=1",
        "SD-T / hops=2",
        "teacher / SE-T",
        "teacher / SE-A",
    ]
    table = json.loads((out / "table.json").read_text())
    cells = {(c["decomposer"], c["solver"]): c for c in table["cells"]}
    accuracy = {label: float(line.split(" | ")[1]) for label, line in zip(labels, lines[4:11])}
    assert accuracy["teacher / teacher-solver (hops=2)"] == round(cells["teacher", "hops=2"]["accuracy"], 3) >= 0.9
    assert accuracy["teacher / deployed solver (hops=1)"] == round(cells["teacher", "hops=1"]["accuracy"], 3) < 0.8
    assert set(table["pass_at_8"]) == {"sd-t", "sd-r"} and all(p["k"] == 8 for p in table["pass_at_8"].values())
    for student in ("sd-t", "sd-r", "se-t", "se-a"):  # each trained as asked, from the bundled base model
        facts = json.loads((out / student / "eval.json").read_text())["training"]
        assert facts["steps"] == 10 and facts["variant"] == student
    assert "\n".join(lines) in capsys.readouterr().out  # and printed
