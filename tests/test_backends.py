"""Real-model backends: ``hf`` on a tiny local model, ``openai`` against a real ``transformers serve`` and a small
scripted HTTP server on 127.0.0.1 (bad JSON, 4xx, 429, a key echoed back), and ``vllm`` where vLLM and a GPU exist.
The shipped configs are rehearsed in test_configs.py."""

from __future__ import annotations

import gc
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Served
from helpers import Traffic, free_port

from rlrefine.core.protocols import BackendError
from rlrefine.core.registry import parse_spec
from rlrefine.decomposers import make_decomposer
from rlrefine.solvers import make_solver

# --- a real transformers serve ------------------------------------------------------------------------------------


def _openai(server: Served, **options) -> dict:
    return {"backend": "openai", "model": server.model, "base_url": server.url, "max_tokens": 16, **options}


@pytest.mark.slow
def test_batch_of_64_runs_concurrently_against_transformers_serve(served, test_rows):
    rows = test_rows[:64]
    solver = make_solver(_openai(served, concurrency=16))
    served.traffic.hold(4)  # each request waits at the server until 4 are in flight: only a concurrent client passes
    results = solver.solve(rows, [r["subquestions"] for r in rows])
    assert [r.error for r in results] == [None] * 64
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in results)
    assert solver.engine.stats["requests"] == 64 and 4 <= solver.engine.stats["peak_in_flight"] <= 16
    assert 4 <= served.traffic.peak <= 16  # the server had several at once, never more than allowed
    served.traffic.hold()
    again = make_solver(_openai(served, concurrency=1)).solve(rows[:8], [r["subquestions"] for r in rows[:8]])
    assert served.traffic.peak == 1
    assert [r.text for r in again] == [r.text for r in results[:8]]  # temperature 0: same replies either way


@pytest.mark.slow
def test_a_wrong_model_id_or_a_url_without_v1_fails_at_start_up(served):
    """Both used to pass the start-up check, then failed every request: every reward None, a run with no signal."""
    with pytest.raises(BackendError, match=r"does not serve 'Qwen/Qwen2.5-7B-Instruct'; it serves: /"):
        make_solver(_openai(served, model="Qwen/Qwen2.5-7B-Instruct"))
    with pytest.raises(BackendError, match=r"/models is not there \(HTTP 404\): is the base URL right\? .* under /v1"):
        make_solver(_openai(served, base_url=served.url.removesuffix("/v1")))
    assert make_solver(_openai(served)).name == f"openai:{served.model}@{served.url}"  # the right one passes


@pytest.mark.slow
def test_decomposer_and_cache_hit_on_rerun(served, test_rows, tmp_path):
    rows = test_rows[:6]
    spec = _openai(served, cache_dir=str(tmp_path / "cache"))
    first = make_decomposer(spec)
    out1 = first.decompose(rows)
    assert first.engine.stats["requests"] == 6 and all(d.error is None for d in out1)
    assert (
        first.name == f"openai:{served.model}@{served.url}" and first.price_key == "student"
    )  # served from a local folder
    short = make_decomposer(f"openai:{served.model}@{served.url}")  # the same, spelled as a string
    assert (short.price_key, short.demonstration, first.demonstration) == ("student", False, False)
    second = make_decomposer(spec)
    out2 = second.decompose(rows)
    assert second.engine.stats["cache_hits"] == 6 and second.engine.stats["requests"] == 0
    assert out2 == out1
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 6


@pytest.mark.slow
def test_server_killed_mid_batch_gives_reported_failures_not_a_hang(tiny_model_dir, test_rows, tmp_path):
    server = Served(tiny_model_dir, tmp_path / "server.log", continuous_batching=False)
    cache = tmp_path / "cache"  # one file per answered request: progress as the engine itself records it
    try:
        spec = _openai(server, concurrency=4, max_tokens=48, max_retries=2, backoff=0.05, timeout=5)
        solver = make_solver({**spec, "base_url": server.direct_url, "cache_dir": str(cache)})  # no proxy: a real death
        rows = test_rows[:64]
        box: dict = {}
        worker = threading.Thread(target=lambda: box.update(results=solver.solve(rows, [[] for _ in rows])))
        worker.start()
        hang = time.monotonic() + 1800  # no clock decides on a busy machine: a guard against a hang only
        while len(list(cache.rglob("*.json"))) < 8 and worker.is_alive() and time.monotonic() < hang:
            time.sleep(0.02)
        server.stop()  # SIGKILL, requests in flight
        worker.join(timeout=120)
        assert not worker.is_alive(), "the batch hung after the server died"
    finally:
        server.stop()
    results = box["results"]
    ok = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    assert len(ok) >= 8 and failed, (len(ok), len(failed))
    assert len(ok) == len(list(cache.rglob("*.json")))  # every answered request cached, no failed one
    assert all("failed after 3 attempts" in r.error for r in failed)
    assert solver.engine.stats["retries"] > 0  # retried before reporting


# --- a scripted HTTP server: bad JSON, 4xx, 429, 5xx, a key echoed back -----------------------------------------


class Scripted(BaseHTTPRequestHandler):
    """Behaviour by the first path segment; counts hits, records request bodies and Authorization headers."""

    hits: Counter
    auth: list
    busy: dict
    bodies: list
    traffic: Traffic

    def _send(self, status: int, body: str, headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # the backend's start-up check: /<mode>/v1/models
        self._send(200, json.dumps({"object": "list", "data": []}))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.path.split("/")[1]
        with self.busy["lock"]:  # the server is threaded: count without losing updates
            self.hits[mode] += 1
            self.bodies.append(body)
        self.auth.append(self.headers.get("Authorization"))
        reply = json.dumps(
            {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "A1: 3\nThe answer is: 8"}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            }
        )
        text = json.dumps(body.get("messages", ""))
        if mode == "ok" or (mode == "mixed" and "broken" not in text):
            self._send(200, reply)
        elif mode == "cut":  # a reply that reached max_tokens
            cut = json.loads(reply)
            cut["choices"][0]["finish_reason"] = "length"
            self._send(200, json.dumps(cut))
        elif mode == "completions":  # the completions endpoint: the reply is text, not a message
            self._send(200, json.dumps({"choices": [{"text": "The answer is: 8"}], "usage": {}}))
        elif mode in ("bad", "mixed"):
            self._send(200, '{"choices": [{"message": {"content": "The answer is')  # cut-off JSON
        elif mode == "nochoices":
            self._send(200, json.dumps({"object": "chat.completion", "choices": []}))
        elif mode == "badrequest":  # a careless server that echoes the request's key in its error
            self._send(400, json.dumps({"error": f"bad request from {self.headers.get('Authorization')}"}))
        elif mode == "flaky":  # rate-limited twice, then fine
            self._send(429, "{}", {"Retry-After": "0"}) if self.hits[mode] <= 2 else self._send(200, reply)
        elif mode == "down":
            self._send(503, json.dumps({"error": "overloaded"}))
        elif mode == "badgzip":  # a proxy that mangles compression: the body cannot be decoded
            self._send(200, "not gzip at all", {"Content-Encoding": "gzip"})
        elif mode == "gate":  # counts how many it works on at once (and holds them: ``Traffic.hold``)
            with self.traffic.request(self.path):
                pass
            self._send(200, reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted():
    busy = {"lock": threading.Lock()}
    fields = {"hits": Counter(), "auth": [], "busy": busy, "bodies": [], "traffic": Traffic()}
    handler = type("Handler", (Scripted,), fields)
    server = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 64})(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.handler = handler
    yield server
    server.shutdown()
    server.server_close()


def _rows(*questions: str) -> list[dict]:
    return [{"id": str(i), "context": "", "question": q, "answer": "8"} for i, q in enumerate(questions)]


def _spec(server, mode: str, **options) -> dict:
    return {"backend": "openai", "model": "m", "base_url": f"{server.base}/{mode}/v1", "backoff": 0.01, **options}


def test_concurrency_is_bounded(scripted):
    rows = _rows(*(f"q{i} ?" for i in range(64)))
    traffic = scripted.handler.traffic
    solver = make_solver(_spec(scripted, "gate", concurrency=16))
    traffic.hold(16)  # each request waits until 16 are in flight: only a client sending 16 at once passes
    assert all(r.answer == "8" for r in solver.solve(rows, [[]] * 64))
    assert traffic.peak == 16 and solver.engine.stats["peak_in_flight"] == 16  # many at once, never more than 16
    traffic.hold()
    make_solver(_spec(scripted, "gate", concurrency=1)).solve(rows[:8], [[]] * 8)
    assert traffic.peak == 1  # and one at a time when asked


def test_a_concurrency_above_httpxs_default_pool_size_is_reached(scripted):
    """httpx's own default pool holds 100 connections: a client left at that would never send 101 at once."""
    rows = _rows(*(f"q{i} ?" for i in range(101)))
    traffic = scripted.handler.traffic
    solver = make_solver(_spec(scripted, "gate", concurrency=101))
    traffic.hold(101)
    assert all(r.answer == "8" for r in solver.solve(rows, [[]] * 101))
    assert traffic.peak == 101


def test_malformed_json_is_reported_per_sample(scripted):
    solver = make_solver(_spec(scripted, "mixed"))
    results = solver.solve(_rows("fine ?", "broken ?", "also fine ?"), [[], ["Q ?"], []])
    assert [r.answer for r in results] == ["8", None, "8"]
    assert results[0].prompt_tokens == 11 and results[0].completion_tokens == 7
    assert "malformed response" in results[1].error
    assert scripted.handler.hits["mixed"] == 3  # a malformed reply is not retried
    nochoices = make_decomposer(_spec(scripted, "nochoices")).decompose(_rows("q ?"))
    assert nochoices[0].error and "malformed response" in nochoices[0].error


def test_only_good_replies_are_cached_and_a_rerun_asks_only_for_the_rest(scripted, tmp_path):
    cache = tmp_path / "cache"
    solver = make_solver(_spec(scripted, "mixed", cache_dir=str(cache)))
    rows, subs = _rows("fine ?", "broken ?", "also fine ?"), [[], ["Q ?"], []]
    assert [r.answer for r in solver.solve(rows, subs)] == ["8", None, "8"]
    assert len(list(cache.rglob("*.json"))) == 2  # the malformed reply is not kept
    again = make_solver(_spec(scripted, "mixed", cache_dir=str(cache)))
    assert [r.answer for r in again.solve(rows, subs)] == ["8", None, "8"]
    assert again.engine.stats["cache_hits"] == 2 and scripted.handler.hits["mixed"] == 4  # only the broken one again


def test_backoff_doubles_per_attempt_up_to_its_cap_and_a_longer_retry_after_wins(scripted):
    import httpx

    engine = make_solver(_spec(scripted, "ok", backoff=1.0, max_backoff=30.0)).engine
    for attempt in range(5):  # jitter: between half and all of backoff * 2**attempt
        assert 2**attempt / 2 <= engine._delay(attempt, None) <= min(2**attempt, 30.0)
    assert engine._delay(9, None) == pytest.approx(30.0, abs=15.0) and engine._delay(9, None) <= 30.0
    told = httpx.Response(429, headers={"Retry-After": "7"})
    assert engine._delay(0, told) == 7.0 and 8 <= engine._delay(4, told) <= 16


def test_a_batch_after_an_unreachable_one_tries_the_endpoint_again(scripted):
    """The engine stops waiting per sample once every retry failed to connect, but only for that batch."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    solver = make_solver({"backend": "openai", "model": "m", "base_url": dead, "check": False, "max_retries": 1,
                          "backoff": 0.01})  # fmt: skip
    assert all("failed after 2 attempts" in r.error for r in solver.solve(_rows("a ?", "b ?", "c ?"), [[]] * 3))
    solver.engine.url = f"{scripted.base}/ok/v1/chat/completions"  # the endpoint is back
    assert [r.answer for r in solver.solve(_rows("a ?", "b ?"), [[]] * 2)] == ["8", "8"]


def test_a_reply_cut_at_max_tokens_is_not_finished(scripted):
    """Truncation is visible: the engine reads the reply's finish reason (RFT keeps only finished samples)."""
    assert [
        c.finished for c in make_solver(_spec(scripted, "cut")).engine.chat([[{"role": "user", "content": "q"}]])
    ] == [False]
    assert make_solver(_spec(scripted, "ok")).engine.chat([[{"role": "user", "content": "q"}]])[0].finished


def test_4xx_is_not_retried(scripted):
    results = make_solver(_spec(scripted, "badrequest", max_retries=3)).solve(_rows("a ?", "b ?"), [[], []])
    assert all("HTTP 400" in r.error and "not retried" in r.error for r in results)
    assert scripted.handler.hits["badrequest"] == 2


def test_429_and_5xx_are_retried_with_backoff(scripted):
    solver = make_solver(_spec(scripted, "flaky", max_retries=3))
    assert solver.solve(_rows("a ?"), [[]])[0].answer == "8"
    assert scripted.handler.hits["flaky"] == 3 and solver.engine.stats["retries"] == 2
    client = solver.engine.client
    del solver  # the connection pool closes with its engine, not at interpreter exit
    gc.collect()
    assert client.is_closed
    down = make_solver(_spec(scripted, "down", max_retries=2)).solve(_rows("a ?"), [[]])[0]
    assert "failed after 3 attempts: HTTP 503" in down.error
    assert scripted.handler.hits["down"] == 3


def test_undecodable_body_and_unwritable_cache_are_per_sample_not_fatal(scripted, tmp_path):
    garbled = make_solver(_spec(scripted, "badgzip", max_retries=1)).solve(_rows("a ?", "b ?"), [[], []])
    assert all("DecodingError" in r.error for r in garbled)  # reported (after a retry), the batch survives
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    results = make_solver(_spec(scripted, "ok", cache_dir=str(blocked))).solve(_rows("a ?"), [[]])
    assert results[0].answer == "8"  # the reply is kept; only its cache entry is lost


def test_completions_endpoint_sends_the_chat_template_as_text(scripted, tiny_model_dir, test_rows):
    from rlrefine.core.format import solver_messages
    from rlrefine.engines.models import load_tokenizer

    row = test_rows[0]
    spec = _spec(scripted, "completions", endpoint="completions", tokenizer=str(tiny_model_dir))
    assert make_solver(spec).solve([row], [row["subquestions"]])[0].answer == "8"
    conversation = solver_messages(row["context"], row["question"], row["subquestions"], None)
    rendered = load_tokenizer(tiny_model_dir).apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=False
    )
    assert scripted.handler.bodies[-1]["prompt"] == rendered and "messages" not in scripted.handler.bodies[-1]


def test_unreachable_endpoint_fails_clearly_within_the_timeout():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: refused at once, not timed out
    with pytest.raises(BackendError, match="cannot reach .* is the server running"):
        make_solver({"backend": "openai", "model": "m", "base_url": url, "timeout": 2})


def test_silent_endpoint_times_out_instead_of_hanging():
    with socket.socket() as listener:  # accepts connections (kernel backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        with pytest.raises(BackendError, match="no answer from .* within 0.5 s"):
            make_solver({"backend": "openai", "model": "m", "base_url": url, "timeout": 0.5})
        spec = {"backend": "openai", "model": "m", "base_url": url, "timeout": 0.5, "max_retries": 1, "check": False}
        solver = make_solver({**spec, "backoff": 0.01, "concurrency": 2})
        results = solver.solve(_rows("a ?", "b ?", "c ?", "d ?", "e ?", "f ?"), [[]] * 6)
        assert all(r.error and "ReadTimeout" in r.error for r in results)
        assert solver.engine.stats["requests"] == 4  # 2 in flight x 2 attempts; the other 4 fail fast, unsent


def test_api_key_never_appears_in_logs_cache_results_or_errors(scripted, tmp_path, monkeypatch, caplog):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("RLREFINE_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    outputs = []
    for mode in ("ok", "badrequest", "down", "bad"):
        spec = _spec(scripted, mode, api_key_env="RLREFINE_TEST_KEY", cache_dir=str(cache), max_retries=1)
        solver = make_solver(spec)
        results = solver.solve(_rows("a ?", "b ?"), [[], ["Q ?"]])
        outputs += [json.dumps(asdict(r)) for r in results]
        outputs += [repr(solver), repr(solver.engine), solver.name, solver.engine.version]
        outputs += [json.dumps(make_decomposer(spec).decompose(_rows("c ?"))[0].__dict__)]
    assert scripted.handler.auth and set(scripted.handler.auth) == {f"Bearer {key}"}  # it was sent, ...
    assert any("HTTP 400" in o for o in outputs) and any("HTTP 503" in o for o in outputs)
    assert list(cache.rglob("*.json"))
    written = [p.read_text() for p in cache.rglob("*") if p.is_file()]
    for text in [caplog.text, *outputs, *written]:  # ... and never written anywhere
        assert key not in text
    with pytest.raises(ValueError, match="api_key_env"):
        make_solver({"backend": "openai", "model": "m", "api_key": key})
    monkeypatch.delenv("RLREFINE_TEST_KEY")
    with pytest.raises(BackendError, match="RLREFINE_TEST_KEY") as err:
        make_solver(_spec(scripted, "ok", api_key_env="RLREFINE_TEST_KEY"))
    assert key not in str(err.value)


# --- specs --------------------------------------------------------------------------------------------------------


def test_spec_forms():
    assert parse_spec("solver", "openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1") == (
        "openai",
        {"": "Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1"},  # the engine splits model and URL
    )
    assert parse_spec("decomposer", "vllm:Qwen/Qwen2.5-7B-Instruct") == ("vllm", {"": "Qwen/Qwen2.5-7B-Instruct"})
    assert parse_spec("solver", "{backend: openai, model: m, concurrency: 4}") == (
        "openai",
        {"model": "m", "concurrency": 4},
    )
    with pytest.raises(ValueError, match="^openai backend: unknown setting.s. colour; valid: model, base_url, "):
        make_solver({"backend": "openai", "model": "m", "colour": "red", "check": False})
    with pytest.raises(ValueError, match="^solver 'openai': missing setting.s. model$"):
        make_solver("{backend: openai}")
    with pytest.raises(
        ValueError, match="^unknown solver 'bogus'; valid: hf, mix, model, neural, openai, symbolic, vllm"
    ):
        make_solver("bogus")
    with pytest.raises(ValueError, match="do not put an API key in a spec"):
        make_solver({"name": "openai", "model": "m", "api_key": "sk-123", "check": False})


def test_openai_spec_string_names_and_json_form(scripted):
    spec = f"openai:m@{scripted.base}/ok/v1"
    solver = make_solver(spec)
    assert solver.name == spec and solver.price_key == "solver"
    assert make_solver(json.dumps(_spec(scripted, "ok"))).solve(_rows("a ?"), [[]])[0].answer == "8"
    labelled = make_decomposer(f"gpt={spec}")
    assert labelled.name == "gpt" and labelled.decompose(_rows("a ?"))[0].text.endswith("The answer is: 8")
    assert labelled.price_key == "teacher"  # not a local folder: a served or hosted model is charged as a teacher


@pytest.mark.slow
def test_completions_endpoint_renders_the_chat_template(served, tiny_model_dir, test_rows):
    spec = _openai(served, endpoint="completions", tokenizer=str(tiny_model_dir))
    results = make_solver(spec).solve(test_rows[:2], [[], []])
    assert all(r.error is None and r.completion_tokens > 0 for r in results)


# --- hf and vllm --------------------------------------------------------------------------------------------------


def test_hf_backend_solver_and_decomposer(tiny_model_dir, test_rows):
    from rlrefine.core.format import SOLVER_INSTRUCTION, solver_messages

    rows = test_rows[:4]
    solver = make_solver(
        {"backend": "hf", "model": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_tokens": 8}
    )
    assert solver.calculator is False and solver.instruction is None  # the paper's static prompt
    results = solver.solve(rows, [r["subquestions"] for r in rows])
    assert all(r.error is None and r.prompt_tokens > 0 and 0 < r.completion_tokens <= 8 for r in results)
    sent = [  # what the solver must have sent: the paper's instruction in the model's own chat template
        solver.engine.tokenizer.apply_chat_template(
            solver_messages(r["context"], r["question"], r["subquestions"], None),
            add_generation_prompt=True,
            return_dict=True,
        )["input_ids"]
        for r in rows
    ]
    assert [r.prompt_tokens for r in results] == [len(ids) for ids in sent]
    assert all(SOLVER_INSTRUCTION in solver.engine.tokenizer.decode(ids) for ids in sent)
    decomposer = make_decomposer(f"hf:{tiny_model_dir}")
    assert decomposer.name == f"hf:{tiny_model_dir}" and decomposer.instruction is None
    assert (solver.price_key, decomposer.price_key) == ("solver", "student")  # a local folder: a model you trained
    assert make_decomposer({"name": "hf", "model": str(tiny_model_dir), "price_key": "teacher"}).price_key == "teacher"
    assert len(decomposer.decompose(rows[:2])) == 2
    with pytest.raises(ValueError, match="^hf backend: unknown setting.s. concurrency; valid: model, dtype, device"):
        make_solver({"backend": "hf", "model": str(tiny_model_dir), "concurrency": 4})


def test_vllm_backend_needs_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"pip install 'rlrefine\[vllm\]'"):
            make_solver("vllm:some/model")
    else:
        pytest.skip("vLLM is installed: see test_vllm_backend_on_gpu")


class _VLLM:
    """vLLM's offline API as the engine uses it (``LLM(**settings).chat(conversations, params, use_tqdm)``, outputs with
    ``prompt_token_ids`` and ``outputs[0].text / token_ids``), for machines without vLLM or a GPU: what is tested is
    rlrefine's side of it. The real one runs in test_vllm_backend_on_gpu where it can."""

    def __init__(self) -> None:
        self.built, self.asked = [], []
        outer = self

        class LLM:
            def __init__(self, **settings) -> None:
                outer.built.append(settings)
                self.model = settings["model"]

            def get_default_sampling_params(self):  # vLLM's: the model folder's generation_config, else its own
                path = Path(self.model, "generation_config.json")
                config = json.loads(path.read_text()) if path.is_file() else {}
                return SimpleNamespace(
                    **{k: config.get(k, d) for k, d in (("repetition_penalty", 1.0), ("min_p", 0.0))}
                )

            def chat(self, conversations, params, use_tqdm=True):
                outer.asked.append((conversations, params))
                reply = lambda c: SimpleNamespace(  # noqa: E731
                    text=f" The answer is: {len(c)} \n",
                    token_ids=[7] * len(c),
                    finish_reason="length" if len(c) > 2 else "stop",
                )
                return [SimpleNamespace(prompt_token_ids=[1] * 5, outputs=[reply(c)]) for c in conversations]

        self.LLM, self.SamplingParams = LLM, lambda **kw: kw


def test_vllm_engine_settings_sharing_and_replies(monkeypatch, test_rows):
    from rlrefine.core.format import solver_messages

    fake = _VLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    rows = test_rows[:3]
    solver = make_solver({"backend": "vllm", "model": "m", "max_tokens": 16, "llm_kwargs": {"enforce_eager": True}})
    results = solver.solve(rows, [r["subquestions"] for r in rows])
    settings = {"model": "m", "dtype": "auto", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "seed": 0}
    assert fake.built == [{**settings, "enforce_eager": True}]  # unset ones (max_model_len) are left to vLLM
    conversations, params = fake.asked[0]
    assert params == {"temperature": 0.0, "max_tokens": 16, "seed": 0, "repetition_penalty": 1.0, "min_p": 0.0}
    assert conversations == [solver_messages(r["context"], r["question"], r["subquestions"], None) for r in rows]
    assert [(r.answer, r.prompt_tokens, r.completion_tokens) for r in results] == [("2", 5, 2)] * 3
    assert solver.name == "vllm:m" and solver.engine.version != make_solver("vllm:m").engine.version  # max_tokens
    decomposer = make_decomposer({"backend": "vllm", "model": "m", "llm_kwargs": {"enforce_eager": True}})
    assert len(fake.built) == 2  # the same model and settings: one engine in GPU memory; other settings: another
    assert decomposer.decompose(rows[:1])[0].text == f"The answer is: {len(decomposer.messages(rows[0]))}"
    assert fake.asked[-1][0] == [decomposer.messages(rows[0])] and decomposer.price_key == "teacher"
    # vLLM's finish reason reaches the completion: "length" (the stand-in's for conversations over 2 messages) is cut
    assert [
        c.finished for c in decomposer.engine.chat([decomposer.messages(rows[0]), [{"role": "user", "content": "q"}]])
    ] == [False, True]


@pytest.mark.slow
def test_vllm_backend_on_gpu(tiny_model_dir, test_rows):
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'rlrefine[vllm]')")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    spec = {"backend": "vllm", "model": str(tiny_model_dir), "max_tokens": 16, "gpu_memory_utilization": 0.3}
    results = make_solver(spec).solve(test_rows[:8], [r["subquestions"] for r in test_rows[:8]])
    assert all(r.error is None and r.completion_tokens > 0 for r in results)
    assert len(make_decomposer(spec).decompose(test_rows[:8])) == 8


def test_the_vllm_engine_applies_the_models_generation_config_as_hf_does(monkeypatch, tiny_model_dir, tmp_path):
    """transformers' generate applies a model's generation_config (a chat model's repetition_penalty, min_p); vLLM
    applies it only to its default sampling parameters, which an engine that builds its own would drop: the same
    model would sample differently per engine. Temperature and length stay the spec's."""
    import shutil

    model = tmp_path / "chatty"
    shutil.copytree(tiny_model_dir, model)
    (model / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.3, "min_p": 0.05, "top_k": 20}))
    fake = _VLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    engine = make_solver({"backend": "vllm", "model": str(model), "max_tokens": 8, "temperature": 0.7}).engine
    engine.chat([[{"role": "user", "content": "q"}]])
    params = fake.asked[-1][1]
    assert params == {"temperature": 0.7, "max_tokens": 8, "seed": 0, "repetition_penalty": 1.3, "min_p": 0.05}
    plain = make_solver({"backend": "vllm", "model": str(tiny_model_dir), "max_tokens": 8, "temperature": 0.7})
    assert plain.engine.version != engine.version  # cached replies of one do not answer for the other
    hf = make_solver({"backend": "hf", "model": str(model)}).engine.model.generation_config
    assert (hf.repetition_penalty, hf.min_p) == (1.3, 0.05)  # what transformers' generate applies to the same model


# --- the openai engine's own logic against a scripted transport: exact values, no clock ---------------------------

import hashlib  # noqa: E402

import httpx  # noqa: E402

from rlrefine.core.protocols import Completion, UsageError  # noqa: E402
from rlrefine.engines import openai as openai_engine  # noqa: E402
from rlrefine.engines.openai import OpenAIEngine  # noqa: E402

BASE = "http://scripted.test/v1"
URL = f"{BASE}/chat/completions"
REPLY = {
    "choices": [{"message": {"content": "  The answer is: 8 \n"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7},
}
HELLO = [{"role": "user", "content": "hello"}]


def _scripted(replies, **options) -> tuple[OpenAIEngine, list]:
    """An engine whose requests are answered in turn by ``replies`` (an ``httpx.Response``, an exception to raise, or
    a function of the request); the requests it sent are listed."""
    sent, queue = [], list(replies)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply

    engine = OpenAIEngine("m", base_url=BASE, check=False, **options)
    engine.client = httpx.Client(transport=httpx.MockTransport(answer))
    return engine, sent


@pytest.fixture
def slept(monkeypatch):
    """The delays the engine sleeps, recorded instead of slept; jitter at its top (``uniform(a, b)`` is ``b``)."""
    delays = []
    monkeypatch.setattr(openai_engine.time, "sleep", delays.append)
    monkeypatch.setattr(openai_engine.random, "uniform", lambda low, high: high)
    return delays


def test_a_reply_is_its_stripped_text_tokens_and_finish_reason():
    engine, sent = _scripted([httpx.Response(200, json=REPLY)], max_tokens=9, temperature=0.5)
    (reply,) = engine.chat([HELLO])
    assert reply == Completion("The answer is: 8", 11, 7, None, True)
    assert json.loads(sent[0].content) == {"model": "m", "max_tokens": 9, "temperature": 0.5, "messages": HELLO}
    assert str(sent[0].url) == URL and engine.stats == {
        "requests": 1, "cache_hits": 0, "retries": 0, "errors": 0, "peak_in_flight": 1,
    }  # fmt: skip
    bare = {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}], "usage": None}
    assert _scripted([httpx.Response(200, json=bare)])[0].chat([HELLO]) == [Completion("x", 0, 0, None, False)]
    nothing = {"choices": [{"message": {"content": "x"}}]}  # no usage, no finish reason: finished, no tokens
    assert _scripted([httpx.Response(200, json=nothing)])[0].chat([HELLO]) == [Completion("x", 0, 0, None, True)]
    assert _scripted([httpx.Response(200, json=REPLY)])[0].chat([]) == []


@pytest.mark.parametrize(
    "body, error",
    [
        ("not json" + "x" * 300, "JSONDecodeError"),
        (json.dumps({"choices": []}), "IndexError"),
        (json.dumps({"choices": [{"message": {"content": None}}]}), "TypeError"),
        (json.dumps({"choices": [{"message": {}}]}), "KeyError"),
        (json.dumps({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}}), "ValueError"),
        (json.dumps({"choices": [{"message": "text"}]}), "TypeError"),
        (json.dumps(["choices"]), "TypeError"),
        (json.dumps({"choices": [{"message": {"content": "x"}}], "usage": ["x"]}), "AttributeError"),
    ],
)
def test_a_malformed_reply_is_that_samples_error_quoting_its_start(body, error):
    engine, _ = _scripted([httpx.Response(200, text=body)])
    (reply,) = engine.chat([HELLO])
    assert reply == Completion(error=f"malformed response from {URL}: {error}: {body[:200]!r}")
    assert engine.stats["errors"] == 1 and engine.stats["requests"] == 1 and engine.stats["retries"] == 0


def test_the_completions_endpoint_sends_the_messages_as_text_and_reads_text():
    engine, sent = _scripted([httpx.Response(200, json={"choices": [{"text": " 8 "}]})], endpoint="completions")
    conversation = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    assert engine.chat([conversation]) == [Completion("8")]
    assert str(sent[0].url) == f"{BASE}/completions" and json.loads(sent[0].content)["prompt"] == "a\n\nb\n"
    assert "messages" not in json.loads(sent[0].content)


def test_extra_body_is_sent_and_overrides_the_defaults():
    engine, sent = _scripted([httpx.Response(200, json=REPLY)], extra_body={"temperature": 1.0, "top_p": 0.5})
    engine.chat([HELLO])
    assert json.loads(sent[0].content) == {
        "model": "m", "max_tokens": 512, "temperature": 1.0, "top_p": 0.5, "messages": HELLO,
    }  # fmt: skip


@pytest.mark.parametrize("status", [400, 401, 404, 422, 428, 499])
def test_a_client_error_other_than_429_is_not_retried(status, slept):
    engine, sent = _scripted([httpx.Response(status, text="no")], max_retries=3)
    assert engine.chat([HELLO]) == [Completion(error=f"{URL}: HTTP {status}: 'no' (not retried)")]
    assert (len(sent), slept, engine.stats["errors"], engine.stats["retries"]) == (1, [], 1, 0)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_429_and_5xx_are_retried_with_doubling_delays_then_reported(status, slept):
    engine, sent = _scripted([httpx.Response(status, text="busy" * 100)], max_retries=3, backoff=0.5)
    (reply,) = engine.chat([HELLO])
    assert reply.error == f"{URL}: failed after 4 attempts: HTTP {status}: {('busy' * 100)[:200]!r}"
    assert (len(sent), slept) == (4, [0.5, 1.0, 2.0])  # backoff * 2**attempt, no sleep after the last
    assert engine.stats == {"requests": 4, "cache_hits": 0, "retries": 3, "errors": 1, "peak_in_flight": 1}
    assert engine._down is None  # the server answered: not down


def test_a_retry_that_succeeds_returns_the_reply(slept):
    engine, sent = _scripted([httpx.Response(503), httpx.Response(429), httpx.Response(200, json=REPLY)])
    assert engine.chat([HELLO])[0].text == "The answer is: 8"
    assert (len(sent), slept, engine.stats["retries"], engine.stats["errors"]) == (3, [1.0, 2.0], 2, 0)


def test_no_retries_means_one_attempt(slept):
    engine, sent = _scripted([httpx.Response(503)], max_retries=0)
    assert engine.chat([HELLO])[0].error == f"{URL}: failed after 1 attempts: HTTP 503: ''"
    assert (len(sent), slept) == (1, [])


def test_backoff_is_jittered_down_to_half_capped_and_a_longer_retry_after_wins(monkeypatch):
    engine = OpenAIEngine("m", base_url=BASE, check=False, backoff=2.0, max_backoff=20.0)
    bounds = []
    monkeypatch.setattr(openai_engine.random, "uniform", lambda low, high: bounds.append((low, high)) or low)
    assert [engine._delay(attempt, None) for attempt in range(5)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert bounds == [(0.5, 1.0)] * 5
    monkeypatch.setattr(openai_engine.random, "uniform", lambda low, high: high)
    assert [engine._delay(attempt, None) for attempt in range(5)] == [2.0, 4.0, 8.0, 16.0, 20.0]
    told = lambda seconds: httpx.Response(429, headers={"Retry-After": seconds})  # noqa: E731
    assert engine._delay(0, told("7")) == 7.0  # longer than the backoff: the server's wins
    assert engine._delay(2, told("7")) == 8.0  # shorter: the backoff's
    assert engine._delay(0, told("99")) == 20.0  # capped either way
    assert engine._delay(1, told("soon")) == 4.0  # not seconds: ignored
    assert engine._delay(1, httpx.Response(503)) == 4.0  # no header
    monkeypatch.setattr(openai_engine.random, "uniform", lambda low, high: low)
    quick = OpenAIEngine("m", base_url=BASE, check=False, backoff=0.25)
    assert quick._delay(0, httpx.Response(503)) == 0.125  # no header: no floor under the backoff


def test_the_server_told_delay_is_what_is_slept(slept):
    engine, _ = _scripted([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json=REPLY)])
    assert engine.chat([HELLO])[0].error is None and slept == [3.0]


def test_a_connection_failure_marks_the_endpoint_down_for_the_rest_of_the_batch_only(slept):
    engine, sent = _scripted([httpx.ConnectError("refused")], max_retries=1, concurrency=1)
    replies = engine.chat([HELLO, HELLO, HELLO])
    message = f"{URL}: failed after 2 attempts: ConnectError: refused"
    assert replies == [Completion(error=message)] * 3
    assert len(sent) == 2 and slept == [1.0]  # the first sample's two attempts; the others are not sent
    assert engine.stats["errors"] == 3 and engine.stats["requests"] == 2
    engine.chat([HELLO])
    assert len(sent) == 4  # a new batch tries the endpoint again


def test_a_body_that_does_not_decode_is_retried_but_does_not_mark_the_endpoint_down(slept):
    engine, sent = _scripted([httpx.DecodingError("garbled")], max_retries=1, concurrency=1)
    replies = engine.chat([HELLO, HELLO])
    assert replies == [Completion(error=f"{URL}: failed after 2 attempts: DecodingError: garbled")] * 2
    assert len(sent) == 4 and engine._down is None


def test_a_last_attempt_answered_by_the_server_does_not_mark_it_down(slept):
    engine, sent = _scripted([httpx.ConnectError("refused"), httpx.Response(503)], max_retries=1, concurrency=1)
    assert engine.chat([HELLO, HELLO])[0].error == f"{URL}: failed after 2 attempts: HTTP 503: ''"
    assert len(sent) == 4  # the second sample was sent too


def test_replies_are_cached_by_url_and_body_and_a_damaged_entry_is_a_miss(tmp_path):
    engine, sent = _scripted([httpx.Response(200, json=REPLY)], cache_dir=tmp_path)
    body = engine._body(HELLO)
    digest = hashlib.sha256(json.dumps({"url": URL, "body": body}, sort_keys=True).encode()).hexdigest()
    path = tmp_path / digest[:2] / f"{digest}.json"
    assert engine._cache_path(body) == path
    first = engine.chat([HELLO])
    assert json.loads(path.read_text()) == {"request": {"url": URL, **body}, "response": asdict(first[0])}
    again, _ = _scripted([httpx.Response(500)], cache_dir=tmp_path)
    assert again.chat([HELLO]) == first and again.stats["cache_hits"] == 1 and again.stats["requests"] == 0
    assert again.stats["peak_in_flight"] == 0  # nothing was sent
    other, _ = _scripted([httpx.Response(200, json=REPLY)], cache_dir=tmp_path, max_tokens=8)
    assert other._cache_path(other._body(HELLO)) != path  # another body: another entry
    for damaged in ("{not json", json.dumps({"nothing": 1}), json.dumps({"response": {"colour": 1}})):
        path.write_text(damaged)
        engine, sent = _scripted([httpx.Response(200, json=REPLY)], cache_dir=tmp_path)
        assert engine.chat([HELLO]) == first and len(sent) == 1 and engine.stats["cache_hits"] == 0
    assert _scripted([httpx.Response(200, json=REPLY)])[0]._cache_path(body) is None  # no cache_dir: no cache


def test_a_failed_reply_is_not_cached(tmp_path, slept):
    engine, _ = _scripted([httpx.Response(200, text="not json")], cache_dir=tmp_path)
    assert engine.chat([HELLO])[0].error is not None and not list(tmp_path.rglob("*.json"))


def test_the_engines_settings_and_identity():
    engine = OpenAIEngine("m@http://h:1/v1/", check=False, concurrency=4, timeout=5.0)
    assert (engine.model, engine.base_url, engine.url) == ("m", "http://h:1/v1", "http://h:1/v1/chat/completions")
    assert engine.name == "openai:m@http://h:1/v1" and repr(engine) == (
        "OpenAIEngine(model='m', url='http://h:1/v1/chat/completions')"
    )
    settings = {"max_tokens": 512, "temperature": 0.0, "tokenizer": None}
    assert engine.version == f"openai|http://h:1/v1/chat/completions|m|{json.dumps(settings, sort_keys=True)}"
    assert engine.client.timeout == httpx.Timeout(5.0) and "authorization" not in engine.client.headers
    assert (engine.concurrency, engine.max_retries, engine.backoff, engine.max_backoff) == (4, 3, 1.0, 30.0)
    assert OpenAIEngine("m", base_url="http://h:1/apiX/", check=False).url == "http://h:1/apiX/chat/completions"
    nested = OpenAIEngine("org@m@http://h:1/v1", check=False)
    assert (nested.model, nested.base_url) == ("org@m", "http://h:1/v1")  # the last @ ends the model
    explicit = OpenAIEngine("a@b", base_url="http://h:2/v1", check=False)
    assert (explicit.model, explicit.base_url) == ("a@b", "http://h:2/v1")  # a URL given: the model is as named
    versions = {
        OpenAIEngine("m", base_url="http://h:1/v1", check=False, **option).version
        for option in ({}, {"max_tokens": 8}, {"temperature": 0.5}, {"extra_body": {"top_p": 0.5}},
                       {"endpoint": "completions"}, {"concurrency": 1, "timeout": 3.0, "max_retries": 0})
    }  # fmt: skip
    assert len(versions) == 5  # what changes a reply changes the version; how it is fetched does not
    ordered = [OpenAIEngine("m", base_url=BASE, check=False, extra_body=body).version
               for body in ({"b": 1, "a": 2}, {"a": 2, "b": 1})]  # fmt: skip
    assert ordered[0] == ordered[1]  # the same settings in another order: the same model
    engine.close()
    assert engine.client.is_closed


def test_the_engines_defaults():
    engine = OpenAIEngine("m", base_url=BASE, check=False)
    assert (engine.endpoint, engine.concurrency, engine.timeout, engine.max_retries) == ("chat", 32, 60.0, 3)
    assert (engine.backoff, engine.max_backoff, engine.max_tokens, engine.temperature) == (1.0, 30.0, 512, 0.0)
    assert engine.client.timeout == httpx.Timeout(60.0) and engine.cache_dir is None and engine.extra_body == {}


def test_the_openai_api_reads_its_key_from_its_usual_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    engine = OpenAIEngine("gpt-x", check=False)
    assert (engine.base_url, engine.name, engine.api_key_env) == (openai_engine.OPENAI_URL, "openai:gpt-x",
                                                                  "OPENAI_API_KEY")  # fmt: skip
    assert engine.client.headers["authorization"] == "Bearer sk-abc"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(BackendError) as refused:
        OpenAIEngine("gpt-x", check=False)
    assert str(refused.value) == "openai backend: environment variable OPENAI_API_KEY (api_key_env) is not set"
    assert OpenAIEngine("m", base_url=BASE, check=False).api_key_env is None  # a served model needs none


@pytest.mark.parametrize(
    "options, message",
    [
        ({"endpoint": "responses"}, "openai backend: endpoint must be 'chat' or 'completions', got 'responses'"),
        ({"concurrency": 0}, "openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required"),
        ({"max_retries": -1}, "openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required"),
        ({"timeout": 0}, "openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required"),
    ],
)
def test_bad_engine_settings_are_refused(options, message):
    with pytest.raises(UsageError) as refused:
        OpenAIEngine("m", base_url=BASE, check=False, **options)
    assert str(refused.value) == message
    OpenAIEngine("m", base_url=BASE, check=False, concurrency=1, max_retries=0, timeout=0.001)  # the bounds pass


def _checked(reply, model: str = "m", **options) -> None:
    engine, sent = _scripted([reply], **options)
    engine.model = model
    engine.check()
    assert [str(r.url) for r in sent] == [f"{BASE}/models"]


@pytest.mark.parametrize(
    "reply, message",
    [
        (httpx.ConnectTimeout("slow"), f"openai backend: no answer from {BASE} within 2.5 s (is the URL right?)"),
        (httpx.ConnectError("refused"), f"openai backend: cannot reach {BASE} (ConnectError: refused); is the "
         "server running?"),
        (httpx.Response(401), f"openai backend: {BASE} refused the request (HTTP 401); set api_key_env to the "
         "variable holding the key"),
        (httpx.Response(403), f"openai backend: {BASE} refused the request (HTTP 403); set api_key_env to the "
         "variable holding the key"),
        (httpx.Response(404), f"openai backend: {BASE}/models is not there (HTTP 404): is the base URL right? "
         "OpenAI-compatible servers answer under /v1 (http://HOST:PORT/v1)"),
        (httpx.Response(200, json={"data": [{"id": f"n{i}"} for i in range(10)]}), f"openai backend: {BASE} does not "
         "serve 'm'; it serves: n0, n1, n2, n3, n4, n5, n6, n7"),
        (httpx.Response(200, json={"data": ["m", {"name": "m"}, {"id": "n"}]}), f"openai backend: {BASE} does not "
         "serve 'm'; it serves: n"),
    ],
)  # fmt: skip
def test_the_start_up_check_fails_fast_saying_why(reply, message):
    with pytest.raises(BackendError) as refused:
        _checked(reply, timeout=2.5)
    assert str(refused.value) == message


def test_the_start_up_check_names_the_key_variable_and_never_the_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret")
    with pytest.raises(BackendError) as refused:
        _checked(httpx.Response(403), api_key_env="MY_KEY")
    assert str(refused.value).endswith("refused the request (HTTP 403); check the key in $MY_KEY")
    with pytest.raises(BackendError) as refused:
        _checked(httpx.ConnectError("refused sk-secret"), api_key_env="MY_KEY")
    assert "(ConnectError: refused ***)" in str(refused.value)
    engine, _ = _scripted([httpx.Response(400, text="echo sk-secret")], api_key_env="MY_KEY")
    assert engine.chat([HELLO])[0].error == f"{URL}: HTTP 400: 'echo ***' (not retried)"
    keyless, _ = _scripted([httpx.Response(400, text="a*b XXXX")])
    assert keyless.chat([HELLO])[0].error == f"{URL}: HTTP 400: 'a*b XXXX' (not retried)"  # no key: nothing scrubbed


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={"data": [{"id": "n"}, {"id": "m"}]}),  # served
        httpx.Response(200, json={"data": []}),  # lists nothing: nothing to check against
        httpx.Response(200, json={"object": "list"}),
        httpx.Response(200, json={"data": {"id": "n"}}),  # not a list
        httpx.Response(200, json=["n"]),
        httpx.Response(200, text="not json"),
        httpx.Response(500, json={"data": [{"id": "n"}]}),  # a failing /models lists nothing
    ],
)
def test_the_start_up_check_passes_when_the_model_is_served_or_nothing_is_listed(reply):
    _checked(reply)


def test_a_local_folder_is_served_under_any_spelling_of_its_path(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    _checked(httpx.Response(200, json={"data": [{"id": str(tmp_path / "model")}]}), model="./model")
    with pytest.raises(BackendError, match="does not serve './elsewhere'"):
        _checked(httpx.Response(200, json={"data": [{"id": str(tmp_path / "elsewhere")}]}), model="./elsewhere")
    assert openai_engine._same_model("m", ["m"]) and not openai_engine._same_model("./model", ["other"])
