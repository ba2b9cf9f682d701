"""``rlrefine pretrain``: the tiny base model every world student starts from (a one-off; the result is bundled).

Real decomposers start from a pretrained LM that can read and copy; a from-scratch tiny student cannot copy
names from the story, samples almost no solver-correct decompositions, and leaves RL nothing to reinforce.
So: plain language modelling on world stories, each followed by questions about random entities of the story
and the sentence of the story that answers each ("Evidence: ..."), which is reading comprehension, not
decomposition. Never a teacher's or the oracle's decomposition (questions come in random entity order, are
never numbered and never in the decomposer's format), never a problem of the default world's validation or
test split (a separate seed, and any overlap is removed).

What made copying appear on 2 CPU cores (measured; see the model card): a curriculum. On long stories alone
the name-copy loss stayed at the "any name of this domain" level for 1,500 steps; short stories first
(attention spread over a few names) made it appear, and then it carries over to long stories.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset

from rlrefine.core.tables import markdown_table
from rlrefine.data.world import DOMAINS, generate, world_config

SHORT = {"depth_min": 1, "depth_max": 2, "distractors": 1}
MIXED = ({"depth_min": 1, "depth_max": 6}, {"depth_min": 2, "depth_max": 6, "branching": 2})


@dataclass
class PretrainArgs:
    out: str = field(default="rlrefine/assets/tiny-base")
    seed: int = 0
    documents: int = 30000
    vocab_size: int = 1024
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    short_steps: int = field(default=800, metadata={"help": "curriculum: steps on short stories first"})
    max_steps: int = field(default=3000, metadata={"help": "total steps, short ones included"})
    batch_size: int = 32
    learning_rate: float = 1e-3
    overwrite: bool = False


def documents(world: dict, count: int, seed: int, exclude: set[str], max_questions: int = 4) -> list[str]:
    """``count`` stories of one kind, each followed by 1-4 (question, evidence) pairs about random entities."""
    rng = random.Random(f"pretrain-{seed}-{sorted(world.items())}")
    cfg = world_config("default", seed=1000 + seed, train_size=count, validation_size=0, test_size=0, **world)
    docs = []
    for row in generate(cfg)["train"]:
        if row["context"] in exclude:
            continue
        graph = json.loads(row["graph"])
        names = list(graph["nodes"])
        rng.shuffle(names)
        template = DOMAINS[row["domain"]].question
        sentences = [s.strip() + " ." for s in row["context"].split(" .") if s.strip()]
        lines = []
        for name in names[: rng.randint(1, max_questions)]:
            lines.append(f"\nQuestion: {template.format(e=name, u=graph['unit'])}\nEvidence: {_about(sentences, name)}")
        docs.append(row["context"] + "".join(lines))
    return docs


def _about(sentences: list[str], entity: str) -> str:
    """The story sentence that says what ``entity`` has (its given fact, or its relation to its parent)."""
    for sentence in sentences:
        words = sentence.split()
        head = words[words.index(",") + 1 :] if "," in words else words
        if entity in head[:2]:
            return sentence
    return ""


def corpus(count: int, seed: int) -> tuple[list[str], list[str]]:
    """(short stories, all kinds mixed): the two phases of the curriculum."""
    held_out = generate(world_config("default"))
    exclude = {r["context"] for split in ("validation", "test") for r in held_out[split]}
    short = documents(SHORT, count // 3, seed, exclude)
    mixed = short + [d for world in MIXED for d in documents(world, count // 3, seed, exclude)]
    random.Random(seed).shuffle(mixed)
    return short, mixed


@torch.inference_mode()
def copy_probe(model, tokenizer, docs: list[str]) -> dict[str, float]:
    """Mean loss (nats) on the name after "does"/"did the" in questions (copying: uniform over the story's
    entities is about 2; over the domain's names about 3.9) and on the parent's name in evidence sentences
    (looking up the right sentence: 0 when solved)."""
    model.eval()
    names, parents = [], []
    for doc in docs:
        ids = tokenizer(doc, return_tensors="pt")["input_ids"].to(model.device)
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        tokens = tokenizer.convert_ids_to_tokens(ids[0])
        start = len(tokenizer(doc[: doc.index("\nQuestion:")])["input_ids"])
        for i in range(start, ids.shape[1] - 1):
            loss = -logprobs[i, ids[0, i + 1]].item()
            if tokens[i] == "Ġdoes" or (tokens[i] == "Ġthe" and tokens[i - 1] == "Ġdid"):
                names.append(loss)
            elif tokens[i - 2] == ":" and (tokens[i - 1], tokens[i]) in (("ĠCompared", "Ġto"), ("ĠBeside", "Ġthe")):
                parents.append(loss)
    model.train()
    return {
        "name_copy_loss": sum(names) / max(len(names), 1),
        "parent_lookup_loss": sum(parents) / max(len(parents), 1),
    }


def main(argv: list[str] | None = None) -> Path:
    from trl import SFTConfig, SFTTrainer

    from rlrefine.core.protocols import UsageError
    from rlrefine.core.settings import parse_config
    from rlrefine.engines.models import build_model, build_tokenizer
    from rlrefine.training.trainers import TRAINER_DEFAULTS, last_checkpoint, publish

    (args,) = parse_config(PretrainArgs, argv, prog="rlrefine pretrain")
    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a model; pass --overwrite to replace it")
    start = time.perf_counter()
    short, mixed = corpus(args.documents, args.seed)
    _, probe_docs = corpus(300, args.seed + 1)
    tokenizer = build_tokenizer(mixed, args.vocab_size)
    model = build_model(tokenizer, args.hidden, args.layers, args.heads, args.seed)
    work = out.with_name(out.name + ".work")
    probes, losses = {"init": copy_probe(model, tokenizer, probe_docs[:100])}, []
    for phase, docs, steps in (("short", short, args.short_steps), ("mixed", mixed, args.max_steps - args.short_steps)):
        config = SFTConfig(
            output_dir=str(work / phase),
            max_length=256,
            per_device_train_batch_size=args.batch_size,
            max_steps=steps,
            learning_rate=args.learning_rate,
            lr_scheduler_type="constant",
            logging_steps=50,
            save_steps=200,
            seed=args.seed,
            **TRAINER_DEFAULTS,
        )
        done = work / phase / "final"
        if (done / "config.json").exists():  # a rerun after a kill skips a finished phase
            model = type(model).from_pretrained(done)
            continue
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=Dataset.from_dict({"text": docs}), processing_class=tokenizer
        )
        trainer.train(resume_from_checkpoint=last_checkpoint(work / phase))
        losses += [h["loss"] for h in trainer.state.log_history if "loss" in h]
        trainer.save_model(str(done))
        model = trainer.model
        probes[phase] = copy_probe(model, tokenizer, probe_docs[:100])
    final = work / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    minutes = (time.perf_counter() - start) / 60
    facts = {"args": vars(args), "probes": probes, "minutes": minutes}
    publish(final, out, card(args, model, tokenizer, len(mixed), probes, losses, minutes), facts, "pretrain.json")
    shutil.rmtree(work, ignore_errors=True)
    print(f"saved base model to {out} ({minutes:.1f} min); probes: {probes}")
    return out


def card(args, model, tokenizer, n_docs: int, probes: dict, losses: list[float], minutes: float) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    rows = [[k, f"{v['name_copy_loss']:.3f}", f"{v['parent_lookup_loss']:.3f}"] for k, v in probes.items()]
    table = "\n".join(markdown_table(["after", "name copy loss", "parent lookup loss"], rows))
    return f"""---
library_name: transformers
tags: [rlrefine, tiny, world]
---
# rlrefine tiny base model

A {n_params / 1e6:.2f}M-parameter Llama ({args.layers} layers x {args.hidden}, {args.heads} heads) with a byte-level
BPE tokenizer ({len(tokenizer)} tokens), pretrained by plain language modelling on {n_docs} world stories, each
followed by questions about random entities of the story and the story sentence that answers each. It never
saw a decomposition (teacher's or oracle's) nor a problem of the default world's validation or test split.
World students start here so that they can copy names from the story, as real decomposers start from a
pretrained LLM.

- curriculum: {args.short_steps} steps on short stories (depth 1-2), then {args.max_steps - args.short_steps} on all kinds
  (depth 1-6, with and without off-chain relations); batch {args.batch_size}, lr {args.learning_rate} constant, seed {args.seed}
- final training loss: {losses[-1] if losses else float("nan"):.4f}
- wall clock: {minutes:.1f} min on 2 CPU cores

Copy probes on held-apart stories (nats; see `rlrefine.training.pretrain.copy_probe`): the question's name is
uniform over the story's entities (about 2.0 at best; 3.9 means "any name of the domain"), the parent's name
in an evidence sentence is determined (0 at best).

{table}

Rebuild: `rlrefine pretrain --out {args.out} --seed {args.seed} --overwrite`
"""
