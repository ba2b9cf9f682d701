"""Datasets by name or path, checked for the columns the pipeline needs.

``world`` (and ``world:<preset>``) is generated on the fly, deterministically; a folder written by
``save_to_disk`` or a JSONL file (schema below) is read with ``datasets``. Real datasets (GSM8K, DROP,
Bamboogle) come in through the same schema.

JSONL schema, one problem per line: ``question`` and ``answer`` (required); ``context`` (text the solver
sees, may be empty), ``id``, ``subquestions`` (gold decomposition, list of strings), ``metric`` (one of
``grading.METRICS``, default ``numeric``), ``domain``. A row without a required field (absent, null or blank)
fails naming the row and the field. For example::

    {"id": "q1", "context": "Ada has 3 apples .", "question": "How many apples does Ada have ?", "answer": "3"}
    {"id": "q2", "question": "Who was president when the Eiffel Tower opened?", "answer": "Sadi Carnot", "metric": "acc"}

Real datasets by name (``rlrefine.datasets_real``): ``gsm8k`` (local files or the hub), ``gsm8k:socratic``
(human sub-questions as gold decompositions), ``drop`` (F1), ``bamboogle`` (accuracy); each also takes a path.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetDict, Value, load_dataset, load_from_disk

from rlrefine.datasets_real import REAL_DATASETS, load_real, require_fields
from rlrefine.grading import METRICS
from rlrefine.world import PRESETS, generate, world_config

REQUIRED = ("question", "answer")
DATASET_HELP = (
    f"'world', 'world:<preset>' (presets: {', '.join(PRESETS)}), 'gsm8k[:socratic][:DIR]', 'drop[:PATH]', "
    "'bamboogle[:PATH]', a save_to_disk folder, or a .jsonl file"
)


OPTIONAL = {"context": "", "subquestions": [], "metric": "numeric", "domain": "", "graph": "", "depth": 0}


def _complete(ds: Dataset, source: str) -> Dataset:
    """Check required columns and fill the optional ones (absent or null), so every consumer sees one schema:
    string ids, unique (caches and resuming go by id), string answers (a JSONL may hold ``"answer": 3``)."""
    for column in REQUIRED:
        if column not in ds.column_names:
            raise ValueError(f"{source}: missing column {column!r} (have: {', '.join(ds.column_names)})")
    require_fields(ds, REQUIRED, source)
    if isinstance(ds.features["answer"], Value) and ds.features["answer"].dtype != "string":
        ds = ds.cast_column("answer", Value("string"))
    for column, default in {"id": None, **OPTIONAL}.items():
        values = ds[column] if column in ds.column_names else [None] * len(ds)
        if column in ds.column_names and None not in values and (column != "id" or ds.features["id"].dtype == "string"):
            continue
        if column == "id":
            filled = [f"{i:05d}" if v is None else str(v) for i, v in enumerate(values)]
        else:
            filled = [default if v is None else v for v in values]
        ds = (ds.remove_columns(column) if column in ds.column_names else ds).add_column(column, filled)
    bad = sorted(set(ds["metric"]) - set(METRICS))
    if bad:
        raise ValueError(f"{source}: unknown metric {bad[0]!r} in column 'metric'; valid: {', '.join(METRICS)}")
    duplicate = next((i for i, n in Counter(ds["id"]).items() if n > 1), None)
    if duplicate is not None:
        raise ValueError(f"{source}: id {duplicate!r} appears more than once; ids must be unique (caches go by id)")
    return ds


def load_splits(data: str) -> DatasetDict:
    """All splits of a dataset given by name or path."""
    name, _, preset = data.partition(":")
    if name == "world":
        return generate(world_config(preset or "default"))
    if name in REAL_DATASETS:  # gsm8k, gsm8k:socratic, drop, bamboogle: rlrefine.datasets_real
        loaded = load_real(data)
    elif os.path.isdir(data):
        loaded = load_from_disk(data)
        loaded = loaded if isinstance(loaded, DatasetDict) else DatasetDict({"test": loaded})
    elif data.endswith((".jsonl", ".json")) and Path(data).is_file():
        loaded = DatasetDict({"test": load_dataset("json", data_files=data, split="train")})
    else:
        raise ValueError(f"unknown dataset {data!r}; valid: {DATASET_HELP}")
    return DatasetDict({split: _complete(ds, f"{data} [{split}]") for split, ds in loaded.items()})


def load_split(data: str, split: str = "test", limit: int | None = None, domain: str | None = None) -> Dataset:
    splits = load_splits(data)
    if split not in splits:
        raise ValueError(f"dataset {data!r} has no split {split!r}; valid: {', '.join(splits)}")
    ds = splits[split]
    if domain:
        domains = sorted(set(ds["domain"]))
        if domain not in domains:
            raise ValueError(f"dataset {data!r} has no domain {domain!r}; valid: {', '.join(domains)}")
        ds = ds.filter(lambda r: r["domain"] == domain)
    return ds if limit is None else ds.select(range(min(limit, len(ds))))
