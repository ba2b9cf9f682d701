"""Every shipped config rehearsed on a CPU, so a renamed key or a new option cannot break a GPU user's first run
unnoticed: each ``configs/*.yaml`` runs end to end through ``train.py`` as its CPU stand-in (``cpu_standin``),
``configs/accelerate/multi_gpu.yaml`` launches two gloo processes (test_train.py), and the DeepSpeed and FSDP configs
go through accelerate's own launch validation and plugins."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import Served

from rlrefine.core.format import decomposer_instruction
from rlrefine.core.registry import parse_spec
from rlrefine.data import load_split
from rlrefine.engines.models import resolve
from rlrefine.train import main, parse_pipeline
from rlrefine.training.settings import subquestion_cap

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
GSM8K = Path(os.environ.get("RLREFINE_GSM8K_DIR") or ROOT.parent / "shared" / "data" / "gsm8k")
BACKENDS = {"hf", "vllm", "openai"}
SPEC_KEYS = {"teacher": "decomposer", "decomposer": "decomposer", "train_solver": "solver", "eval_solvers": "solver"}
TINY_RUN = {"eval_limit": 4, "train_limit": 4, "pass_k": 2}  # a few problems
# a few small steps, one checkpoint saved
TINY_TRAINING = {"max_steps": 2, "save_steps": 2, "logging_steps": 1, "gradient_accumulation_steps": 1}
GPU_ONLY = {"use_vllm": False, "fp16": False}  # what a CPU cannot run (bf16 autocast it can); the rest runs as written


def cpu_standin(config: Path, out: Path, served: dict[str, Served] | None = None) -> Path:
    """``config`` as a CPU runs it, written to ``out/standin.yaml``: every real model (``hf:``, ``vllm:``, ``openai:``
    specs) becomes a model behind a real ``transformers serve`` (``served[role]``, role ``decomposer`` or ``solver``),
    a hub base model the bundled tiny base; vLLM, fp16 and bfloat16 weights are off (bf16 autocast runs); steps,
    problems and lengths are tiny. Every other key runs as written."""
    cfg = yaml.safe_load(config.read_text())
    real_models = []

    def swap(spec, role: str):
        if isinstance(spec, list):
            return [swap(s, role) for s in spec]
        try:
            name, settings = parse_spec(role, spec)
        except ValueError:
            return spec
        if name not in BACKENDS:
            return spec
        if not served:
            pytest.fail(f"{config.name} names a real model ({spec}): its rehearsal needs a served stand-in")
        server = served[role]
        real = str(settings.pop("model", settings.pop("", "")))
        drop = ("base_url", "tokenizer", "gpu_memory_utilization")  # the real model's endpoint, tokenizer, GPU share
        settings = {k: v for k, v in settings.items() if k not in drop}
        if "cache_dir" in settings:
            settings["cache_dir"] = str(out / "cache" / role)
        if role == "decomposer" and not os.path.isdir(real.rpartition("@")[0] or real):
            settings.update(price_key="teacher", demonstration=True)  # as the real teacher is prompted and priced
        real_models.append(real)
        settings.update(model=server.model, base_url=server.url, max_tokens=24, timeout=300)  # a CPU serves slowly
        swapped = {"name": "openai", **settings}
        return (
            yaml.safe_dump(swapped, default_flow_style=True, width=10**6).strip() if isinstance(spec, str) else swapped
        )

    for key, role in SPEC_KEYS.items():
        if cfg.get(key) is not None:
            cfg[key] = swap(cfg[key], role)
    for reward in cfg.get("rewards") or []:
        for key in ("solver", "solvers"):
            if key in reward:
                reward[key] = swap(reward[key], "solver")
    leftover = []
    for key, value in cfg.items():
        text = json.dumps(value)
        for server in (served or {}).values():
            text = text.replace(server.url, "")
        leftover += [key] * ("://" in text)
    assert not leftover, f"{config.name}: {leftover} still point at an endpoint; teach cpu_standin to swap them"
    base = str(cfg.get("base_model", "base"))
    if base not in ("base", "tiny-base") and not os.path.isdir(resolve(base)):
        cfg["base_model"] = "base"  # a hub model: the bundled tiny base stands in
    if real_models and cfg.get("sft_variant") == "sd-r":
        cfg["sft_variant"] = "sd-t"  # SD-R keeps what the solver gets right: a tiny stand-in solver never is on GSM8K
    cfg["sft"] = {**(cfg.get("sft") or {}), **TINY_TRAINING, "per_device_train_batch_size": 4}
    cfg["sft"].update({k: v for k, v in GPU_ONLY.items() if k in cfg["sft"]})
    cfg.update({k: v for k, v in GPU_ONLY.items() if k in cfg}, **TINY_RUN, **TINY_TRAINING)
    cfg.update(run_dir=str(out / "run"), per_device_train_batch_size=4)
    if cfg.get("algorithm", "grpo") in ("grpo", "rloo", "ppo"):
        cfg.update(num_generations=4, max_completion_length=min(cfg.get("max_completion_length", 32), 32))
    if cfg.get("dtype") in ("bfloat16", "float16"):
        cfg["dtype"] = "float32"
    path = out / "standin.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_runs_end_to_end_as_its_cpu_standin(config, tmp_path, request):
    raw = yaml.safe_load(config.read_text())
    if str(raw.get("data", "world")).startswith("gsm8k") and not (GSM8K / "test.jsonl").exists():
        pytest.skip(f"no local GSM8K copy at {GSM8K}")
    served = None
    if "://" in json.dumps(raw):  # a served teacher stands in for the real one: a real chat model shown the worked
        # example, so its replies parse (a tiny world model's do not); a tiny model stands in for every solver
        served = {"decomposer": request.getfixturevalue("served_smollm2"), "solver": request.getfixturevalue("served")}
    before = {role: s.completed() for role, s in (served or {}).items()}
    standin = cpu_standin(config, tmp_path, served)
    results = main(["--config", str(standin)])
    run = tmp_path / "run"
    facts = json.loads((run / "rl" / "eval.json").read_text())["training"]
    assert facts["steps"] == 2 and (run / "sft" / "README.md").exists() and (run / "results.md").exists()
    sft = json.loads((run / "sft" / "eval.json").read_text())["training"]
    assert sft["steps"] == 2 and sft["lora"] == bool(raw.get("use_peft"))  # LoRA as the config says

    names = {c["decomposer"] for c in results["cells"]}
    assert {"none", "sft", f"rl-{raw.get('algorithm', 'grpo')}"} <= names
    assert set(results["pass_at_k"]) == {"sft", f"rl-{raw.get('algorithm', 'grpo')}"}
    rows = load_split(raw.get("data", "world"), raw.get("eval_split", "test"), TINY_RUN["eval_limit"])
    if any(row.get("subquestions") for row in rows):
        assert "oracle" in names
    else:  # no gold sub-questions: left out of the matrix, and the report says why
        assert "oracle" not in names and "oracle left out" in (run / "results.md").read_text()
    for role, server in (served or {}).items():
        assert server.completed() > before[role]  # teacher data, rewards and evaluation went through the servers
    if "tensorboard" in str(raw.get("report_to")):
        assert list((run / "rl" / "runs").rglob("events.out.tfevents*"))  # the logs outlive the work folder
    saved = parse_pipeline(["--config", str(run / "config.yaml")])  # the run folder repeats the run
    assert saved[0].data == raw.get("data", "world") and saved[2] == parse_pipeline(["--config", str(standin)])[2]


def test_gsm8k_grpo_config_parses_with_the_training_entry_point():
    args, trl_args, model_args = parse_pipeline(["--config", str(ROOT / "configs" / "gsm8k_grpo.yaml")])
    assert args.data == "gsm8k" and args.algorithm == "grpo"
    assert args.instruction == decomposer_instruction(subquestion_cap(args.rewards))  # instruction: null, the run's cap
    assert model_args.use_peft and model_args.lora_r == 16
    assert trl_args.use_vllm and trl_args.vllm_mode == "colocate"
    assert parse_spec("solver", args.train_solver)[0] == "openai"
    assert all(parse_spec("solver", s)[0] == "openai" for s in args.eval_solvers)


@pytest.mark.parametrize("name", ["multi_gpu", "zero2", "zero3", "fsdp2"])
def test_accelerate_configs_pass_accelerates_launch_validation(name):
    """What ``accelerate launch --config_file configs/accelerate/NAME.yaml --num_processes 7 rlrefine/train.py ...``
    does before it starts any process: merge the file into the launch arguments, check them, set the environment the
    processes read, from which accelerate builds its DeepSpeed or FSDP plugin (DeepSpeed itself is not needed)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    argv = ["--config_file", str(path), "--num_processes", "7", str(ROOT / "rlrefine" / "train.py")]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    assert args.num_processes == 7 and args.mixed_precision == "bf16" and defaults.num_processes == 8
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    env = {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}
    with mock.patch.dict(os.environ, env):
        if name.startswith("zero"):
            plugin = DeepSpeedPlugin()
            assert plugin.zero_stage == int(name[-1]) == plugin.deepspeed_config["zero_optimization"]["stage"]
        elif name == "fsdp2":
            plugin = FullyShardedDataParallelPlugin()
            assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        else:
            assert args.multi_gpu and not (args.use_deepspeed or args.use_fsdp)


def test_lora_with_vllm_weight_syncs_keeps_float32_weights(tiny_model_dir):
    """TRL merges the adapter into the base weights and unmerges it at every vLLM weight sync. In bfloat16 the unmerge
    does not give the weights back and the error compounds; a shipped config that syncs LoRA weights to vLLM keeps
    them in float32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    drift = {}
    for dtype in (torch.bfloat16, torch.float32):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        peft = get_peft_model(model, lora)
        weights = [m.base_layer.weight for m in peft.modules() if hasattr(m, "base_layer")]
        before = [w.detach().float().clone() for w in weights]
        for _ in range(20):  # 20 weight syncs
            peft.merge_adapter()
            peft.unmerge_adapter()
        largest = max(b.abs().max().item() for b in before)
        drift[dtype] = max((w.detach().float() - b).abs().max().item() for w, b in zip(weights, before)) / largest
    assert drift[torch.bfloat16] > 0.01 and drift[torch.float32] < 1e-5
    for config in CONFIGS:
        cfg = yaml.safe_load(config.read_text())
        if cfg.get("use_peft") and cfg.get("use_vllm"):
            assert cfg.get("dtype") not in ("bfloat16", "float16"), config.name
