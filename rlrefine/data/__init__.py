"""Datasets by name or path, checked for the columns the pipeline needs.

``world`` (and ``world:<preset>``) is generated on the fly, deterministically. Your own problems come as JSONL
(schema below): a folder of one file per split (``DIR/train.jsonl``, ``DIR/validation.jsonl``, ``DIR/test.jsonl``),
a mapping of split to file (``{train: a.jsonl, test: b.jsonl}``, in a config or as a YAML string on the command
line), or one file (the ``test`` split). A folder written by ``save_to_disk`` works too. Real datasets (GSM8K,
DROP, Bamboogle) come in through the same schema.

JSONL schema, one problem per line: ``question`` and ``answer`` (required); ``context`` (text the solver
sees, may be empty), ``id``, ``subquestions`` (gold decomposition, list of strings), ``metric`` (one of
``grading.METRICS``, default ``numeric``), ``domain``. A row without a required field (absent, null or blank)
fails naming the file, line and field, as do an answer that is not a number under the ``numeric`` metric, an
unknown metric, a repeated id, a line that is not JSON and an empty file. For example::

    {"id": "q1", "context": "Ada has 3 apples .", "question": "How many apples does Ada have ?", "answer": "3"}
    {"id": "q2", "question": "Who was president when the Eiffel Tower opened?", "answer": "Sadi Carnot", "metric": "acc"}

Real datasets by name (``rlrefine.data.real``): ``gsm8k`` (local files or the hub), ``gsm8k:socratic``
(human sub-questions as gold decompositions), ``drop`` (F1), ``bamboogle`` (accuracy); each also takes a path.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, Value, load_from_disk

from rlrefine.core import registry
from rlrefine.core.grading import METRICS
from rlrefine.core.protocols import UsageError
from rlrefine.core.schema import DEFAULTS, REQUIRED
from rlrefine.data.real import require_fields

_NUMBER = re.compile(r"^[-+]?(\d[\d,]*)?\.?\d+$")


def _complete(ds: Dataset, source: str) -> Dataset:
    """Check required columns and fill the optional ones (absent or null), so every consumer sees one schema:
    string ids, unique (caches and resuming go by id), string answers (a JSONL may hold ``"answer": 3``)."""
    for column in REQUIRED:
        if column not in ds.column_names:
            raise UsageError(f"{source}: missing column {column!r} (have: {', '.join(ds.column_names)})")
    require_fields(ds, REQUIRED, source)
    if isinstance(ds.features["answer"], Value) and ds.features["answer"].dtype != "string":
        ds = ds.cast_column("answer", Value("string"))
    for column, default in {"id": None, **DEFAULTS}.items():
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
        raise UsageError(f"{source}: unknown metric {bad[0]!r} in column 'metric'; valid: {', '.join(METRICS)}")
    duplicate = next((i for i, n in Counter(ds["id"]).items() if n > 1), None)
    if duplicate is not None:
        raise UsageError(f"{source}: id {duplicate!r} appears more than once; ids must be unique (caches go by id)")
    return ds


def read_problems(path: str | os.PathLike) -> Dataset:
    """A JSONL file of problems, every line checked before any work: the first bad one is one line naming the file,
    the line and the field."""
    path, rows, seen = Path(path), [], {}
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for field in REQUIRED:
            if row.get(field) is None or (isinstance(row[field], str) and not row[field].strip()):
                raise UsageError(f"{where}: missing field {field!r}")
        metric = row.get("metric") or "numeric"
        if metric not in METRICS:
            raise UsageError(f"{where}: unknown metric {metric!r} in field 'metric'; valid: {', '.join(METRICS)}")
        row["answer"] = str(row["answer"])
        if metric == "numeric" and not _NUMBER.match(row["answer"].strip()):
            raise UsageError(
                f"{where}: field 'answer' is {row['answer']!r}, not a number, under the numeric metric "
                '(give the number, or set "metric" to em, f1 or acc)'
            )
        if row.get("id") is not None:
            row["id"] = str(row["id"])
            if row["id"] in seen:
                raise UsageError(f"{where}: id {row['id']!r} repeats line {seen[row['id']]}; ids must be unique")
            seen[row["id"]] = n
        rows.append(row)
    if not rows:
        raise UsageError(f"{path}: no problems in it (the file is empty)")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return Dataset.from_dict({c: [row.get(c) for row in rows] for c in columns})


def _files(data: str | Mapping) -> dict[str, Path] | None:
    """Split files the user named: a mapping (or its YAML text), a folder of SPLIT.jsonl, or one file (test)."""
    if isinstance(data, str) and data.lstrip().startswith("{"):
        import yaml

        data = yaml.safe_load(data)
    if isinstance(data, Mapping):
        return {str(split): Path(str(file)) for split, file in data.items()}
    if data.endswith((".jsonl", ".json")) and Path(data).is_file():
        return {"test": Path(data)}
    if os.path.isdir(data) and not Path(data, "dataset_dict.json").exists():
        return {f.stem: f for f in sorted(Path(data).glob("*.jsonl"))} or None
    return None


def load_splits(data: str | Mapping) -> DatasetDict:
    """All splits of a dataset: files the user named (a folder, a mapping, one file), or a name in the registry (a
    built-in such as ``world:bench`` or ``gsm8k:socratic``, ``package.module:attr``, ``file.py:attr``, an entry point
    in ``rlrefine.datasets``): a function that returns a DatasetDict."""
    files = _files(data)
    if files:
        loaded = DatasetDict({split: read_problems(file) for split, file in files.items()})
    elif isinstance(data, str) and os.path.isdir(data):
        loaded = load_from_disk(data)
        loaded = loaded if isinstance(loaded, DatasetDict) else DatasetDict({"test": loaded})
    else:
        loaded = DatasetDict(registry.build("dataset", data))
    return DatasetDict({split: _complete(ds, f"{_label(data)} [{split}]") for split, ds in loaded.items()})


def _label(data: str | Mapping) -> str:
    return data if isinstance(data, str) else ", ".join(f"{k}: {v}" for k, v in data.items())


def load_split(data: str, split: str = "test", limit: int | None = None, domain: str | None = None) -> Dataset:
    splits = load_splits(data)
    if split not in splits:
        raise UsageError(f"dataset {data!r} has no split {split!r}; valid: {', '.join(splits)}")
    ds = splits[split]
    if domain:
        domains = sorted(set(ds["domain"]))
        if domain not in domains:
            raise UsageError(f"dataset {data!r} has no domain {domain!r}; valid: {', '.join(domains)}")
        ds = ds.filter(lambda r: r["domain"] == domain)
    return ds if limit is None else ds.select(range(min(limit, len(ds))))


NEEDS = {  # a column a solver or decomposer reads -> what it is, and what to use where data lacks it
    "graph": ("world problems (a 'graph' column)", "use a model (hf:, vllm:, openai:) or a plugin that reads the text"),
    "subquestions": (
        "gold sub-questions (a 'subquestions' column)",
        "use data that has them (world, gsm8k:socratic, a JSONL with 'subquestions')",
    ),
}


def require(what: str, requires: Sequence[str], rows: Sequence[Mapping], source: str) -> None:
    """Refuse, in one line, a solver or decomposer on rows none of which hold what it reads (symbolic solvers and the
    flawed teacher read the world's ``graph``, the oracle gold ``subquestions``): better than a matrix of 0.000
    cells whose every row failed, or an oracle that is ``none`` under another name."""
    for needed in requires:  # "a|b": either column will do
        columns = needed.split("|")
        if not any(row.get(c) for row in rows for c in columns):
            need, instead = NEEDS.get(columns[0], (f"a {columns[0]!r} column", "use data that has it"))
            raise UsageError(f"{what} needs {need}; {source} has none: {instead}")
