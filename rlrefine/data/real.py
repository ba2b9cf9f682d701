"""Real datasets in the pipeline's row schema (``rlrefine.data``): GSM8K, DROP and Bamboogle.

Grading per dataset as in the paper: GSM8K exact match of the number after "####" (metric ``numeric``), DROP
token F1 (``f1``), Bamboogle accuracy (``acc``: the gold answer appears in the prediction).

- ``gsm8k``: train/test from a local folder of the original files (``train.jsonl``, ``test.jsonl``;
  ``$RLREFINE_GSM8K_DIR``, else ``../shared/data/gsm8k`` beside the repository, or ``gsm8k:/path/to/dir``), else
  the hub's ``openai/gsm8k``. The question is the whole problem (``context`` is empty); ``answer`` is the
  number after "####" without thousands separators; ``solution`` keeps the worked solution.
- ``gsm8k:socratic`` (or ``gsm8k:socratic:/path/to/dir``): the socratic files (``test_socratic.jsonl``, and
  ``train_socratic.jsonl`` where present; the hub's ``socratic`` config online), whose human sub-questions
  become ``subquestions``: gold decompositions, usable as teacher decompositions (decomposer ``oracle``).
  They are every step's sub-question, often more than the paper's cap of three (``format.parse`` flags those).
- ``drop`` (hub ``ucinlp/drop``, train/validation) or ``drop:FILE.jsonl`` / ``drop:DIR`` (a file per split).
- ``bamboogle`` (hub ``chiayewken/bamboogle``, test) or ``bamboogle:FILE.jsonl`` / ``bamboogle:DIR``.

Local DROP/Bamboogle files may be in the pipeline's schema (``question``, ``answer``, ``context``, ...) or in
the hub's (DROP: ``passage``, ``question``, ``answers_spans``; Bamboogle: ``Question``, ``Answer``). A row
without a required field fails naming the row and the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from rlrefine.core.protocols import UsageError

GSM8K_ENV = "RLREFINE_GSM8K_DIR"
GSM8K_LOCAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k"


def require_fields(ds: Dataset, fields: tuple[str, ...], source: str) -> None:
    """Fail naming the first row (index and id) that lacks one of ``fields`` (absent, null or blank)."""
    ids = ds["id"] if "id" in ds.column_names else None
    for name in fields:
        values = ds[name] if name in ds.column_names else [None] * len(ds)
        for i, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()):
                row_id = f" (id {ids[i]!r})" if ids is not None and ids[i] is not None else ""
                raise UsageError(f"{source}: row {i}{row_id} is missing field {name!r}")


def gsm8k_answer(solution: str) -> str:
    """The gold answer of a GSM8K solution: the number after "####", without thousands separators.

    >>> gsm8k_answer("He has 2 + 3 = <<2+3=5>>5 apples.\\n#### 1,005")
    '1005'
    """
    if "####" not in solution:
        raise ValueError("no '####' final answer")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def socratic_subquestions(solution: str) -> list[str]:
    """The human sub-questions of a socratic solution, whose steps read "Sub-question? ** step".

    >>> socratic_subquestions("How many eggs are left? ** 16 - 3 = 13\\n#### 13")
    ['How many eggs are left?']
    """
    return [line.split(" ** ", 1)[0].strip() for line in solution.splitlines() if " ** " in line]


def _hub(repo: str, config: str | None, local_hint: str) -> DatasetDict:
    """A dataset from the hub, or one clear error saying what to do instead (these machines are offline)."""
    try:
        return load_dataset(repo, config) if config else load_dataset(repo)
    except Exception as exc:  # noqa: BLE001 - offline, missing, or renamed: one message with the way out
        raise UsageError(f"{local_hint}; loading {repo} from the hub failed ({type(exc).__name__})") from None


def _local(path: str, name: str) -> DatasetDict:
    """A JSONL file (the ``test`` split) or a folder with one ``SPLIT.jsonl`` per split."""
    p = Path(path)
    if p.is_file():
        return DatasetDict({"test": load_dataset("json", data_files=str(p), split="train")})
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else []
    if not files:
        raise UsageError(f"{name}: no JSONL file or folder of SPLIT.jsonl files at {path}")
    return DatasetDict({f.stem: load_dataset("json", data_files=str(f), split="train") for f in files})


def _convert(raw: DatasetDict, source: str, required: tuple[str, ...], row: Callable[[Mapping, int, str], dict]):
    out = {}
    for split, ds in raw.items():
        require_fields(ds, required, f"{source} [{split}]")
        out[split] = Dataset.from_list([row(r, i, split) for i, r in enumerate(ds)])
    return DatasetDict(out)


def gsm8k(folder: str | None = None, socratic: bool = False) -> DatasetDict:
    """GSM8K from a local folder of the original files, or from the hub (see the module docstring)."""
    where = Path(folder or os.environ.get(GSM8K_ENV) or GSM8K_LOCAL)
    suffix = "_socratic" if socratic else ""
    files = {s: where / f"{s}{suffix}.jsonl" for s in ("train", "test") if (where / f"{s}{suffix}.jsonl").is_file()}
    if files:
        raw = DatasetDict({s: load_dataset("json", data_files=str(f), split="train") for s, f in files.items()})
        source = str(where)
    elif folder or os.environ.get(GSM8K_ENV):
        raise UsageError(f"gsm8k: no train{suffix}.jsonl or test{suffix}.jsonl in {where}")
    else:
        hint = f"gsm8k: no local copy at {where} (set {GSM8K_ENV} or use gsm8k:/path/to/dir)"
        raw, source = _hub("openai/gsm8k", "socratic" if socratic else "main", hint), "openai/gsm8k"

    def row(r: Mapping, i: int, split: str) -> dict:
        try:
            answer = gsm8k_answer(r["answer"])
        except ValueError:
            raise UsageError(f"{source} [{split}]: row {i} has no '####' final answer in field 'answer'") from None
        return {
            "id": f"gsm8k-{split}-{i:05d}",
            "context": "",
            "question": r["question"].strip(),
            "answer": answer,
            "solution": r["answer"],
            "subquestions": socratic_subquestions(r["answer"]) if socratic else [],
            "metric": "numeric",
            "domain": "gsm8k",
        }

    return _convert(raw, source, ("question", "answer"), row)


def _ours(r: Mapping, i: int, split: str, name: str, metric: str) -> dict:
    """A row already in the pipeline's schema, with this dataset's defaults."""
    return {
        **r,
        "id": str(r.get("id") or f"{name}-{split}-{i:05d}"),
        "context": r.get("context") or "",
        "subquestions": list(r.get("subquestions") or []),
        "metric": r.get("metric") or metric,
        "domain": r.get("domain") or name,
    }


def drop(path: str | None = None) -> DatasetDict:
    """DROP reading comprehension: passage as context, F1 against the gold span(s) joined with ", "."""
    raw = _local(path, "drop") if path else _hub("ucinlp/drop", None, "drop: pass a local file with drop:FILE.jsonl")
    native = "passage" in next(iter(raw.values())).column_names

    def row(r: Mapping, i: int, split: str) -> dict:
        if not native:
            return _ours(r, i, split, "drop", "f1")
        spans = list(dict.fromkeys((r.get("answers_spans") or {}).get("spans") or []))
        if not spans:
            raise UsageError(f"drop [{split}]: row {i} (id {r.get('query_id')!r}) is missing field 'answers_spans'")
        return {
            "id": r.get("query_id") or f"drop-{split}-{i:05d}",
            "context": r["passage"],
            "question": r["question"],
            "answer": ", ".join(spans),
            "subquestions": [],
            "metric": "f1",
            "domain": "drop",
        }

    return _convert(raw, path or "ucinlp/drop", ("passage", "question") if native else ("question", "answer"), row)


def bamboogle(path: str | None = None) -> DatasetDict:
    """Bamboogle two-hop questions (no context): accuracy = the gold answer appears in the prediction."""
    raw = (
        _local(path, "bamboogle")
        if path
        else _hub("chiayewken/bamboogle", None, "bamboogle: pass a local file with bamboogle:FILE.jsonl")
    )
    native = "Question" in next(iter(raw.values())).column_names

    def row(r: Mapping, i: int, split: str) -> dict:
        if not native:
            return _ours(r, i, split, "bamboogle", "acc")
        return {
            "id": f"bamboogle-{split}-{i:05d}",
            "context": "",
            "question": r["Question"],
            "answer": str(r["Answer"]),
            "subquestions": [],
            "metric": "acc",
            "domain": "bamboogle",
        }

    return _convert(
        raw, path or "chiayewken/bamboogle", ("Question", "Answer") if native else ("question", "answer"), row
    )


def gsm8k_dataset(source: str = "") -> DatasetDict:
    """The registry's ``gsm8k``: ``gsm8k``, ``gsm8k:DIR``, ``gsm8k:socratic`` or ``gsm8k:socratic:DIR``."""
    socratic = source == "socratic" or source.startswith("socratic:")
    return gsm8k((source.partition(":")[2] if socratic else source) or None, socratic)
