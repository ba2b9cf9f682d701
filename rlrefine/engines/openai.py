"""Any OpenAI-compatible endpoint (a vLLM server, ``transformers serve``, a hosted API) as a chat engine, over ``httpx``.

Bounded concurrency, timeouts, retries with exponential backoff on 429/5xx and connection errors (never on other
4xx), an on-disk reply cache keyed by the request, and the API key read from the environment variable named by
``api_key_env``, never written anywhere. A failed or malformed reply is that sample's error, never an exception.
"""

from __future__ import annotations

import hashlib
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from rlrefine.core.atomic import write_json
from rlrefine.core.protocols import BackendError, Completion, UsageError

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"


def _model_ids(response: httpx.Response) -> list[str]:
    """The model ids a ``/models`` reply lists (none when it lists nothing or is not such a reply)."""
    try:
        data = response.json().get("data") if response.is_success else None
    except (ValueError, AttributeError):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) else []


def _same_model(model: str, served: list[str]) -> bool:
    """Whether ``model`` is among ``served``; a local folder counts under any spelling of its path."""
    real = os.path.realpath
    return model in served or (os.path.exists(model) and real(model) in {real(m) for m in served})


class OpenAIEngine:
    """Chat (or completions) requests to an OpenAI-compatible endpoint, one thread per in-flight request.

    Threads rather than asyncio so it works from any caller, including code already inside an event loop.
    ``openai:MODEL@URL`` names a served model; ``openai:MODEL`` alone is the OpenAI API, key in $OPENAI_API_KEY.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = OPENAI_URL,
        api_key_env: str | None = None,
        endpoint: str = "chat",
        concurrency: int = 32,  # a served 7B model batches dozens of requests; a hosted API may want fewer
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
        if "@" in model and base_url == OPENAI_URL:  # openai:MODEL@URL names a served model
            model, _, base_url = model.rpartition("@")
        if base_url == OPENAI_URL and api_key_env is None:  # the OpenAI API itself: its key's usual variable
            api_key_env = "OPENAI_API_KEY"
        if endpoint not in ("chat", "completions"):
            raise UsageError(f"openai backend: endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise UsageError("openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
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
            from rlrefine.engines.models import load_tokenizer

            self._tokenizer = load_tokenizer(tokenizer)
        settings = {"max_tokens": max_tokens, "temperature": temperature, "tokenizer": tokenizer, **self.extra_body}
        self.name = f"openai:{model}" + ("" if self.base_url == OPENAI_URL else f"@{self.base_url}")
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
        """Fail fast, within ``timeout``, when the endpoint is unreachable, refuses the key, is not an OpenAI-style API
        at that URL (no ``/models`` there: a base URL without ``/v1``), or lists its models and ``model`` is not one."""
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
        if response.status_code == 404:
            raise BackendError(
                f"openai backend: {self.base_url}/models is not there (HTTP 404): is the base URL right? "
                "OpenAI-compatible servers answer under /v1 (http://HOST:PORT/v1)"
            )
        served = _model_ids(response)
        if served and not _same_model(self.model, served):
            raise BackendError(
                f"openai backend: {self.base_url} does not serve {self.model!r}; it serves: {', '.join(served[:8])}"
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
                text.strip(),
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                finished=choice.get("finish_reason") != "length",  # cut at max_tokens: not finished
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
