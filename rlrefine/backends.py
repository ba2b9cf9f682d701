"""Real models behind the solver and decomposer protocols: ``hf``, ``vllm`` and ``openai`` backends.

- ``hf``: a local transformers model (folder or hub id), batched generation with left padding and the KV
  cache (``ModelSolver`` / ``ModelDecomposer``), dtype and device options, the model's chat template.
- ``vllm``: vLLM's offline engine on the local GPUs (``pip install 'rlrefine[vllm]'``; imported only when used).
- ``openai``: any OpenAI-compatible endpoint (a vLLM server, ``transformers serve``, a hosted API) over
  ``httpx``: bounded concurrency, timeouts, retries with exponential backoff on 429/5xx and connection errors
  (never on other 4xx), an on-disk response cache keyed by the request, the API key read from the environment
  variable named by ``api_key_env`` and never written anywhere.

Every backend is a solver (the paper's static prompt: question + sub-questions, answered in order, "The answer
is: ...") and a teacher/decomposer (the paper's prompt: at most three sub-questions or "No decomposition").
Specs, accepted wherever a solver or decomposer is named::

    hf:Qwen/Qwen2.5-7B-Instruct
    vllm:Qwen/Qwen2.5-7B-Instruct
    openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1   # no key unless api_key_env is given
    openai:gpt-4o-mini                                         # the OpenAI API, key in $OPENAI_API_KEY
    {backend: openai, model: gpt-4o-mini, api_key_env: MY_KEY, concurrency: 16, cache_dir: cache/gpt}

The last form is a mapping, or the same mapping written as a YAML/JSON string (so it fits the places that
take a string, such as ``train_solver`` and reward settings). A failed request becomes that sample's error
(``SolveResult.error`` / ``Decomposed.error``): rewards skip it, ``rlrefine teach`` retries it on the next run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from rlrefine.atomic import write_json
from rlrefine.decomposers import Decomposed
from rlrefine.format import decomposer_messages, solver_messages
from rlrefine.solvers.base import SolveResult
from rlrefine.solvers.model import text_result

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai")
OPENAI_URL = "https://api.openai.com/v1"
SPEC_HELP = (
    "'hf:PATH_OR_ID', 'vllm:MODEL', 'openai:MODEL[@BASE_URL]', or a mapping "
    "{backend: hf|vllm|openai, model: ..., <options>} (also as a YAML/JSON string)"
)
ROLE_KEYS = ("backend", "name", "price_key")  # what every spec may carry besides the backend's own options
MAX_TOKENS = {"solver": 512, "decomposer": 256}  # room for worked sub-answers; decompositions are short


class BackendError(ValueError):
    """A backend that cannot serve (unreachable endpoint, refused key, missing package): a setup problem,
    reported as one line before any work starts."""


@dataclass
class Completion:
    """One generated reply, or the reason there is none (``error``)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class ChatEngine(Protocol):
    version: str  # identifies the model and settings behind the replies (evaluation caches key on it)

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]: ...


class OpenAIEngine:
    """Chat (or completions) requests to an OpenAI-compatible endpoint, one thread per in-flight request.

    Threads rather than asyncio so it works from any caller, including code already inside an event loop.
    """

    def __init__(
        self,
        model: str,
        base_url: str = OPENAI_URL,
        api_key_env: str | None = None,
        endpoint: str = "chat",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        cache_dir: str | os.PathLike | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        extra_body: Mapping[str, Any] | None = None,
        tokenizer: str | None = None,
        check: bool = True,
    ) -> None:
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"openai backend: endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self.model, self.endpoint, self.base_url = model, endpoint, base_url.rstrip("/")
        self.url = f"{self.base_url}/{'chat/completions' if endpoint == 'chat' else 'completions'}"
        self.api_key_env, self.concurrency, self.timeout = api_key_env, concurrency, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_tokens, self.temperature, self.extra_body = max_tokens, temperature, dict(extra_body or {})
        headers = {}
        self._secret = ""  # kept only to scrub it from error text a server might echo back
        if api_key_env:
            self._secret = os.environ.get(api_key_env, "")
            if not self._secret:
                raise BackendError(f"openai backend: environment variable {api_key_env} (api_key_env) is not set")
            headers["Authorization"] = f"Bearer {self._secret}"
        self.client = httpx.Client(
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._closer = weakref.finalize(self, self.client.close)
        self._tokenizer = None
        if tokenizer:  # the completions endpoint takes text: render the chat template here
            from rlrefine.models import load_tokenizer

            self._tokenizer = load_tokenizer(tokenizer)
        settings = {"max_tokens": max_tokens, "temperature": temperature, "tokenizer": tokenizer, **self.extra_body}
        self.version = f"openai|{self.url}|{model}|{json.dumps(settings, sort_keys=True)}"
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "errors": 0, "peak_in_flight": 0}
        self._lock = threading.Lock()
        self._flying = 0
        self._down: str | None = None
        if check:
            self.check()

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, url={self.url!r})"

    def close(self) -> None:
        """Close the connection pool now; otherwise it closes when the engine is garbage-collected."""
        self._closer()

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def check(self) -> None:
        """Fail fast, within ``timeout``, when the endpoint is unreachable or refuses the key."""
        try:
            response = self.client.get(f"{self.base_url}/models")
        except httpx.TimeoutException:
            raise BackendError(
                f"openai backend: no answer from {self.base_url} within {self.timeout:g} s (is the URL right?)"
            ) from None
        except httpx.TransportError as exc:
            reason = self._scrub(f"{type(exc).__name__}: {exc}")
            raise BackendError(
                f"openai backend: cannot reach {self.base_url} ({reason}); is the server running?"
            ) from None
        if response.status_code in (401, 403):
            hint = (
                f"check the key in ${self.api_key_env}"
                if self.api_key_env
                else "set api_key_env to the variable holding the key"
            )
            raise BackendError(
                f"openai backend: {self.base_url} refused the request (HTTP {response.status_code}); {hint}"
            )

    def _body(self, conversation: list[dict]) -> dict:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.endpoint == "chat":
            body["messages"] = conversation
        elif self._tokenizer is not None:
            body["prompt"] = self._tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
        else:
            body["prompt"] = "\n\n".join(m["content"] for m in conversation) + "\n"
        return {**body, **self.extra_body}

    def _cache_path(self, body: dict) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(json.dumps({"url": self.url, "body": body}, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    @contextmanager
    def _in_flight(self):
        with self._lock:
            self._flying += 1
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self._flying)
        try:
            yield
        finally:
            with self._lock:
                self._flying -= 1

    def _parse(self, response: httpx.Response) -> Completion:
        """The reply text and token counts; a body that is not a completion is this sample's error."""
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
            usage = data.get("usage") or {}
            return Completion(
                text.strip(), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            snippet = response.text[:200]
            return Completion(
                error=self._scrub(f"malformed response from {self.url}: {type(exc).__name__}: {snippet!r}")
            )

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter; a server's ``Retry-After`` (seconds) wins when it is longer."""
        delay = self.backoff * 2**attempt * random.uniform(0.5, 1.0)
        try:
            delay = max(delay, float(response.headers.get("retry-after", 0))) if response is not None else delay
        except ValueError:
            pass
        return min(delay, self.max_backoff)

    def request(self, body: dict) -> Completion:
        """One request with cache, retries and per-sample failure; never raises."""
        path = self._cache_path(body)
        if path is not None and path.is_file():
            try:
                cached = Completion(**json.loads(path.read_text())["response"])
                self._count("cache_hits")
                return cached
            except (ValueError, KeyError, TypeError):
                pass  # a damaged cache entry is a miss
        if self._down:  # the endpoint already failed every retry in this batch: don't wait again per sample
            self._count("errors")
            return Completion(error=self._down)
        reason, transport_failure = "", False
        for attempt in range(self.max_retries + 1):
            response = None
            self._count("requests")
            try:
                with self._in_flight():
                    response = self.client.post(self.url, json=body)
            except httpx.RequestError as exc:  # connection, timeout, a body that does not decode
                reason, transport_failure = f"{type(exc).__name__}: {exc}", isinstance(exc, httpx.TransportError)
            else:
                if response.is_success:
                    result = self._parse(response)
                    if result.error is None and path is not None:
                        try:
                            write_json(path, {"request": {"url": self.url, **body}, "response": asdict(result)})
                        except OSError as exc:  # a full disk loses the cache entry, not the reply
                            log.warning("openai backend: could not cache a reply in %s: %s", self.cache_dir, exc)
                    if result.error:
                        self._count("errors")
                    return result
                reason, transport_failure = f"HTTP {response.status_code}: {response.text[:200]!r}", False
                if response.status_code != 429 and response.status_code < 500:  # won't succeed on retry
                    self._count("errors")
                    return Completion(error=self._scrub(f"{self.url}: {reason} (not retried)"))
            if attempt < self.max_retries:
                delay = self._delay(attempt, response)
                log.warning(
                    "%s", self._scrub(f"{self.url}: {reason}; retry {attempt + 1}/{self.max_retries} in {delay:.1f} s")
                )
                self._count("retries")
                time.sleep(delay)
        message = self._scrub(f"{self.url}: failed after {self.max_retries + 1} attempts: {reason}")
        if transport_failure:
            self._down = message
        self._count("errors")
        return Completion(error=message)

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]:
        """Replies in input order; at most ``concurrency`` requests in flight."""
        self._down = None  # each batch tries the endpoint afresh
        bodies = [self._body(c) for c in conversations]
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            return list(pool.map(self.request, bodies))


_VLLM_ENGINES: dict[str, Any] = {}  # one engine per model and settings per process: GPU memory is loaded once


class VLLMEngine:
    """vLLM's offline engine: continuous batching on the local GPUs, chat template applied by vLLM."""

    def __init__(
        self,
        model: str,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        llm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise BackendError("the vllm backend needs vLLM on a CUDA machine: pip install 'rlrefine[vllm]'") from None
        settings = {
            "model": model,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "seed": seed,
            **dict(llm_kwargs or {}),
        }
        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in _VLLM_ENGINES:
            _VLLM_ENGINES[key] = vllm.LLM(**{k: v for k, v in settings.items() if v is not None})
        self.llm = _VLLM_ENGINES[key]
        self.sampling = vllm.SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)
        self.version = f"vllm|{key}|{max_tokens}|{temperature}"

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]:
        outputs = self.llm.chat(list(conversations), self.sampling, use_tqdm=False)
        return [
            Completion(o.outputs[0].text.strip(), len(o.prompt_token_ids or []), len(o.outputs[0].token_ids))
            for o in outputs
        ]


class ChatSolver:
    """A chat engine as a solver: the paper's static prompt, answers read like every free-text solver's."""

    def __init__(self, engine: ChatEngine, name: str, price_key: str = "solver") -> None:
        self.engine, self.name, self.price_key = engine, name, price_key
        self.version = engine.version

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        conversations = [solver_messages(r["context"], r["question"], list(sq)) for r, sq in zip(rows, subquestions)]
        return [
            SolveResult(answer=None, error=out.error)
            if out.error
            else text_result(out.text, sq, out.prompt_tokens, out.completion_tokens)
            for out, sq in zip(self.engine.chat(conversations), subquestions)
        ]


class ChatDecomposer:
    """A chat engine as a teacher/decomposer: the paper's decomposition prompt, one pass per problem."""

    def __init__(self, engine: ChatEngine, name: str, price_key: str = "teacher") -> None:
        self.engine, self.name, self.price_key = engine, name, price_key
        self.version = engine.version

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        conversations = [decomposer_messages(r["context"], r["question"], None) for r in rows]
        return [
            Decomposed(o.text, o.prompt_tokens, o.completion_tokens, o.error) for o in self.engine.chat(conversations)
        ]


def is_backend_spec(spec: object) -> bool:
    """Whether ``spec`` names one of these backends (so the built-in resolution hands it over here)."""
    if isinstance(spec, Mapping):
        return True
    return isinstance(spec, str) and (spec.lstrip().startswith("{") or spec.partition(":")[0] in BACKENDS)


def backend_config(spec: str | Mapping) -> dict:
    """The settings a spec names, with ``backend`` and ``model`` checked; keys never belong in it."""
    config: object = spec
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            config = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            raise ValueError(f"backend spec {spec!r} is not a valid YAML/JSON mapping: {exc}") from None
    elif isinstance(spec, str):
        backend, _, rest = spec.partition(":")
        if backend not in BACKENDS or not rest:
            raise ValueError(f"unknown backend spec {spec!r}; valid: {SPEC_HELP}")
        config = {"backend": backend, "model": rest}
        if backend == "openai" and "@" in rest:
            model, _, url = rest.rpartition("@")
            config.update(model=model, base_url=url)
    if not isinstance(config, Mapping):
        raise ValueError(f"backend spec {spec!r} must be a mapping; valid: {SPEC_HELP}")
    config = dict(config)
    if "api_key" in config:
        raise ValueError(
            "do not put an API key in a spec or config (they are logged and saved with runs); "
            "name the environment variable that holds it with api_key_env"
        )
    if config.get("backend") not in BACKENDS:
        raise ValueError(f"backend spec {spec!r}: 'backend' must be one of {', '.join(BACKENDS)}; valid: {SPEC_HELP}")
    if not config.get("model"):
        raise ValueError(f"backend spec {spec!r}: 'model' is required")
    return config


def _options(cls, config: Mapping, backend: str) -> dict:
    """The backend's own options from ``config``; an unknown key fails naming the valid ones."""
    options = {k: v for k, v in config.items() if k not in ROLE_KEYS}
    valid = list(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{backend} backend: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid + list(ROLE_KEYS))}"
        )
    return options


HF_OPTIONS = ("model", "dtype", "device", "max_tokens", "batch_size")


def _hf(config: Mapping, name: str, role: str):
    """``ModelSolver`` / ``ModelDecomposer`` with the paper's prompts (instruction None, no calculator)."""
    from rlrefine.models import ModelDecomposer
    from rlrefine.solvers.model import ModelSolver

    unknown = sorted(set(config) - set(HF_OPTIONS) - set(ROLE_KEYS))
    if unknown:
        raise ValueError(
            f"hf backend: unknown option(s) {', '.join(unknown)}; valid: {', '.join(HF_OPTIONS + ROLE_KEYS)}"
        )
    kwargs = {
        "max_new_tokens": config.get("max_tokens", MAX_TOKENS[role]),
        "batch_size": config.get("batch_size", 32),
        "dtype": config.get("dtype", "auto"),
        "device": config.get("device"),
    }
    if role == "solver":
        model = ModelSolver(config["model"], name=name, calculator=False, instruction=None, **kwargs)
    else:
        model = ModelDecomposer(config["model"], instruction=None, **kwargs)
        model.name = name
    model.price_key = price_key(config, role)
    return model


def price_key(config: Mapping, role: str) -> str:
    """The price-table row a model's tokens are charged at, one rule for every backend: ``price_key`` if given;
    a solver at ``solver``; a decomposer at ``student`` when it is a local folder (a model you trained), else
    at ``teacher`` (a hub id or a served model)."""
    if config.get("price_key"):
        return config["price_key"]
    if role == "solver":
        return "solver"
    return "student" if os.path.isdir(str(config["model"])) else "teacher"


def _build(spec: str | Mapping, role: str):
    config = backend_config(spec)
    backend = config["backend"]
    short = isinstance(spec, str) and not spec.lstrip().startswith("{")
    name = config.get("name") or (spec if short else f"{backend}:{config['model']}")
    if backend == "hf":
        return _hf(config, name, role)
    cls = OpenAIEngine if backend == "openai" else VLLMEngine
    options = _options(cls, config, backend)
    options.setdefault("max_tokens", MAX_TOKENS[role])
    if backend == "openai" and "base_url" not in options:  # the OpenAI API itself: its usual key variable
        options.setdefault("api_key_env", "OPENAI_API_KEY")
    engine = cls(**options)
    return (ChatSolver if role == "solver" else ChatDecomposer)(engine, name, price_key(config, role))


def make_backend_solver(spec: str | Mapping):
    """A solver on a real model (``hf``, ``vllm``, ``openai``) from its spec."""
    return _build(spec, "solver")


def make_backend_decomposer(spec: str | Mapping):
    """A teacher/decomposer on a real model (``hf``, ``vllm``, ``openai``) from its spec."""
    return _build(spec, "decomposer")
