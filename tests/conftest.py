"""Session-wide test setup: offline, one thread, small data built once."""

import gc
import os
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # outright, not a default: a test must never reach the hub
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="rlrefine-tests-datasets-")  # not the user's cache
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from rlrefine.world import generate, world_config  # noqa: E402

# Property tests: derandomized in CI (the same examples every run, so a red build is the code's fault, not the seed's);
# random locally, where a failing example is kept in .hypothesis/ and replayed first next time. CI sets
# HYPOTHESIS_PROFILE=ci (.ci/run); a CI service's usual CI=true selects it too.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_collection_finish(session):
    """What collection imported (torch, transformers, sympy: millions of objects) is there for the whole session:
    frozen out of the collector, so the full collection after a test that held a model costs milliseconds."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items):
    """A test on the SFT-trained tiny decomposer (``tiny_decomposer``, ~25 s to build) trains or samples end to end:
    it belongs to the full suite, not to the fast tier (``pytest -m "not slow"``)."""
    for item in items:
        if "tiny_decomposer" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test starts without the process-wide caches an earlier test filled (shared solvers and their memos,
    vLLM engines), so no result depends on test order."""
    yield
    held = False
    for module, name in (
        ("rlrefine.solvers.base", "_SHARED"),
        ("rlrefine.engines.vllm", "_VLLM_ENGINES"),
    ):
        if module in sys.modules and getattr(sys.modules[module], name):
            getattr(sys.modules[module], name).clear()
            held = True
    if held:  # a cleared cache may have held a model: free it now; what outlives it is session-long, frozen too
        gc.collect()
        gc.freeze()


@pytest.fixture(scope="session")
def world():
    """The default world at test size: 400 train / 100 validation / 200 test problems."""
    return generate(world_config("small"))


@pytest.fixture(scope="session")
def test_rows(world):
    return list(world["test"])


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """The small world as ``rlrefine world`` saves it (a ``save_to_disk`` folder)."""
    from rlrefine.cli import main

    out = tmp_path_factory.mktemp("world") / "small"
    assert main(["world", "--preset", "small", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def world_jsonl(tmp_path_factory):
    """The small world as a user's own problems: ``rlrefine world --jsonl``, one JSONL file per split."""
    from rlrefine.cli import main

    out = tmp_path_factory.mktemp("mine") / "data"
    assert main(["world", "--preset", "small", "--jsonl", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world):
    """A freshly built (untrained) tiny Llama + tokenizer, saved once per session."""
    from rlrefine.models import build_model, build_tokenizer

    texts = [r["context"] + "\nQuestion: " + r["question"] for r in world["train"]]
    tokenizer = build_tokenizer(texts, vocab_size=600)
    model = build_model(tokenizer, hidden=64, layers=2, heads=2)
    out = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_decomposer(tmp_path_factory):
    """The bundled base model after a few SD-T steps: it writes the format, ends with EOS, and is sometimes
    right with hops=1 (so RL and RFT have signal)."""
    from rlrefine.cli import main

    out = tmp_path_factory.mktemp("tiny-sft") / "decomposer"
    argv = [
        "sft",
        "--variant",
        "sd-t",
        "--output_dir",
        str(out),
        "--data",
        "world:small",
        "--max_steps",
        "100",
        "--per_device_train_batch_size",
        "16",
        "--warmup_steps",
        "0",
        "--eval_limit",
        "0",
    ]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def reward_batch(test_rows):
    """Five completions for one depth-3 problem, as TRL hands them to a reward: texts, token ids (EOS = 1) and
    the dataset columns, one entry per completion."""
    import json

    from rlrefine.format import render

    depth = 3
    row = next(r for r in test_rows if r["depth"] == depth and r["domain"] == "marbles")
    chain = json.loads(row["graph"])["chain"]
    unit = json.loads(row["graph"])["unit"]
    q = lambda e: f"How many {unit} does {e} have ?"  # noqa: E731
    completions = [
        render(row["subquestions"]),  # oracle: right for hops=1
        render([q(chain[2])]),  # merged: right for hops=2 only
        render([q(chain[2]), q(chain[1])]),  # misordered
        "Q1: Q1: Q1:",  # garbage
        render(row["subquestions"]),  # oracle again but cut at the length cap
    ]
    ids = [[5, 6, 1], [5, 1], [5, 6, 1], [7, 1], [5, 6, 6]]
    columns = {
        k: [row[k]] * len(completions) for k in ("id", "context", "question", "answer", "metric", "graph", "domain")
    }
    return completions, ids, columns


@pytest.fixture(scope="session")
def kill_at_checkpoint():
    """Run a training command in its own process group until it has written a complete checkpoint into ``work``,
    then SIGKILL it (a real kill, not an exception); returns that checkpoint's path.

    No clock decides: it waits as long as the run takes on a busy machine (a 30-minute guard only against a hang),
    and a run that ends before it wrote a checkpoint fails naming its exit code and its last output. Commands are
    sized so that a checkpoint comes well before the end, or held there (``helpers.HOLD_REWARD``)."""
    import signal
    import subprocess
    import time
    from pathlib import Path

    from rlrefine.trainers import last_checkpoint

    def run(cmd: list[str], work: Path, env: dict | None = None) -> Path:
        fd, name = tempfile.mkstemp(prefix="killed-", suffix=".log")  # outside the run folder
        os.close(fd)
        log = Path(name)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
            )
        hang = time.monotonic() + 1800
        try:
            while last_checkpoint(work) is None:
                if proc.poll() is not None:
                    pytest.fail(
                        f"the run ended (exit {proc.returncode}) before a checkpoint: {log.read_text()[-2000:]}"
                    )
                if time.monotonic() > hang:
                    pytest.fail(f"no checkpoint after 30 minutes: {log.read_text()[-2000:]}")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"the run ended by itself: {log.read_text()[-2000:]}"
        return Path(last_checkpoint(work))

    return run
