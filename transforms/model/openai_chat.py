"""The vision LLM behind an OpenAI-compatible chat-completions server (LMDeploy, SGLang, vLLM).

`OpenAIChatModel` is a picklable factory like `TritonModel`; its client answers the model
contract (DESIGN.md, "The model contract") without Triton: for each (REQUEST, IMAGE) item
it renders the prompt of the product_vlm prompt set (`model_repository/product_vlm/
prompts.py`, the same `PromptSet.render` that `product_vlm/1/model.py` runs), turns the
rendered Qwen chat prompt into chat `messages` (`chat_messages`) and POSTs one
`/chat/completions` request. The answer's text is the RESPONSE, unparsed: the pipeline
parses leniently and corrects against the taxonomy.

The prompt set is the model version: `metadata()` reports the manifest's `model_version`
and `taxonomy_version`, so a model version means the same prompts, and the same
predictions, on either backend. Point `prompts_dir` at the prompt set made for the served
weights (candidate mode included: its classify requests need `--classify-candidates`).

Concurrency. The server batches continuously over everything it has been given, so every
item of a batch is sent at once, on a thread pool of `max_concurrency` threads shared by
all the client's calls (the bound on requests in flight per client) over one pooled
`httpx.Client`; the client never batches twice (DESIGN.md).

Failures. Connect errors, timeouts and HTTP 429/502/503/504 are retried with capped
backoff (`transforms.model.retry`); any other HTTP error, a contract error in the REQUEST
or a prompt that cannot be rendered is that item's exception, and the other items are
answered. When every item failed in transport, the server is down and `infer_batch`
raises `ChatServerUnavailable` (the service answers 503, a batch job dead-letters the batch).

Limits. No streaming (an answer is used whole); one answer (`n` = 1) per item; greedy
sampling bounded by `max_tokens_classify` / `max_tokens_extract`, the defaults of
product_vlm's config.pbtxt; one image per item, sent inline as a base64 data URL. The
server applies a chat template to the messages: Qwen2.5-VL's own (Hugging Face) template,
vLLM's default, gives back exactly the raw prompt that product_vlm sends to vLLM; a
server's built-in template (LMDeploy, SGLang) should be checked against it once per
model, since a fine-tune learnt one exact frame. The API key is read from the
environment variable named by `api_key_env` when the client is made, so it never sits in
the pickled factory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from model_repository.contract import ModelRequest, Task
from model_repository.product_vlm import prompts
from transforms.model.client import ModelClient, ModelMetadata
from transforms.model.retry import RetriesExhausted, RetryPolicy, call_with_retries
from transforms.model.triton import ModelConfigError

__all__ = [
    "TRANSIENT_HTTP_STATUSES",
    "ChatServerError",
    "ChatServerUnavailable",
    "OpenAIChatModel",
    "OpenAIChatClient",
    "chat_messages",
    "is_transient",
]

# 429: the server's queue is full; 502/503/504: a proxy or a restarting server.
TRANSIENT_HTTP_STATUSES = frozenset({429, 502, 503, 504})
# How much of a server's error text goes into an item's exception (and its dead letter).
_MAX_ERROR_CHARS = 500
# product_vlm's config.pbtxt defaults (`max_tokens_classify`, `max_tokens_extract`).
_MAX_TOKENS_CLASSIFY = 384
_MAX_TOKENS_EXTRACT = 256

_TURN = re.compile(r"<\|im_start\|>([a-z]+)\n(.*?)<\|im_end\|>\n?", re.DOTALL)
_OPEN_ASSISTANT = "<|im_start|>assistant\n"


class ChatServerError(RuntimeError):
    """The server answered an item with an HTTP error (or an answer without text)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChatServerUnavailable(RetriesExhausted):
    """Every item of a call failed in transport: the whole call failed."""

    def __init__(self, url: str, items: int, first: RetriesExhausted) -> None:
        super().__init__(first.attempts, first.last)
        self.args = (f"all {items} requests to {url} failed: {first}",)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ChatServerError):
        return exc.status in TRANSIENT_HTTP_STATUSES
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def chat_messages(prompt: str, image: bytes | None) -> list[dict[str, Any]]:
    """The OpenAI chat `messages` of a rendered product_vlm prompt.

    The templates hold the whole raw prompt in Qwen's chat format, because vLLM's Triton
    backend applies no chat template. A chat-completions server applies the served model's
    template itself, so here each `<|im_start|>ROLE\\n ... <|im_end|>` block becomes a
    message of that role and the open assistant turn at the end is dropped (the server
    opens it). The image placeholder in the user turn becomes an `image_url` part with the
    JPEG as a data URL, between the text around it; a turn without image is plain text.
    ValueError when the prompt is not in that shape, or its placeholder and `image` disagree.
    """
    if not prompt.endswith(_OPEN_ASSISTANT):
        raise ValueError(f"the prompt does not end with the open assistant turn {_OPEN_ASSISTANT!r}")
    body = prompt[: -len(_OPEN_ASSISTANT)]
    messages: list[dict[str, Any]] = []
    images_placed = 0
    position = 0
    for turn in _TURN.finditer(body):
        if turn.start() != position:
            raise ValueError(f"text outside a chat turn at character {position} of the prompt")
        position = turn.end()
        role, text = turn.group(1), turn.group(2)
        if role not in ("system", "user"):
            raise ValueError(f"unexpected chat role {role!r} in the prompt")
        placeholders = text.count(prompts.IMAGE_PLACEHOLDER)
        if placeholders == 0:
            messages.append({"role": role, "content": text})
            continue
        if role != "user" or placeholders > 1 or image is None or images_placed:
            raise ValueError("the prompt's image placeholder does not match the item's image")
        images_placed += 1
        before, after = text.split(prompts.IMAGE_PLACEHOLDER)
        url = "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")
        parts: list[dict[str, Any]] = [{"type": "text", "text": before}] if before else []
        parts.append({"type": "image_url", "image_url": {"url": url}})
        if after:
            parts.append({"type": "text", "text": after})
        messages.append({"role": role, "content": parts})
    if position != len(body):
        raise ValueError(f"text outside a chat turn at character {position} of the prompt")
    if image is not None and not images_placed:
        raise ValueError("the item has an image but the prompt has no image placeholder")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("the prompt has no user turn")
    return messages


@dataclass(frozen=True)
class OpenAIChatModel:
    """Picklable factory: which server, which served model, which prompt set."""

    # Base URL of the server's OpenAI API, e.g. http://127.0.0.1:23333/v1.
    url: str
    # The served model's name (`model` of the requests; what GET {url}/models lists).
    model: str
    # The prompt set, i.e. the model version; None: product_vlm's shipped one.
    prompts_dir: str | None = None
    # Per HTTP request (connect, read, write, pool wait); retries have `retry.budget_s`.
    timeout_s: float = 60.0
    # The environment variable that holds the bearer token, read when the client is made.
    api_key_env: str = "PRODUCTLENS_OPENAI_API_KEY"
    # Requests in flight per client (its thread pool and connection pool).
    max_concurrency: int = 16
    max_tokens_classify: int = _MAX_TOKENS_CLASSIFY
    max_tokens_extract: int = _MAX_TOKENS_EXTRACT
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"--openai-url takes the http(s) base URL of the server's OpenAI API "
                f"(e.g. http://127.0.0.1:23333/v1), got {self.url!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"--openai-url is a base URL without query or fragment, got {self.url!r}")
        if not self.model or not self.model.strip():
            raise ValueError("--openai-model takes the served model's name (as GET <url>/models lists it)")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if self.max_tokens_classify < 1 or self.max_tokens_extract < 1:
            raise ValueError("max_tokens_classify and max_tokens_extract must be positive")
        if not self.api_key_env:
            raise ValueError("api_key_env names the environment variable of the API key")

    @property
    def prompts_directory(self) -> str:
        return self.prompts_dir or str(prompts.DEFAULT_PROMPTS_DIR)

    def __call__(self) -> ModelClient:
        return OpenAIChatClient(self)


class OpenAIChatClient:
    def __init__(self, spec: OpenAIChatModel) -> None:
        self.spec = spec
        self.prompt_set = prompts.PromptSet.load(spec.prompts_directory)
        self._base = spec.url.rstrip("/")
        self._sampling = {
            Task.CLASSIFY: prompts.sampling_parameters(spec.max_tokens_classify),
            Task.EXTRACT: prompts.sampling_parameters(spec.max_tokens_extract),
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(spec.api_key_env, "").strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            headers=headers,
            timeout=spec.timeout_s,
            limits=httpx.Limits(max_connections=spec.max_concurrency, max_keepalive_connections=spec.max_concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=spec.max_concurrency, thread_name_prefix="openai-chat")
        self._metadata: ModelMetadata | None = None
        self._lock = threading.Lock()
        # Plain counters, as TritonClient's: the model step publishes them (`take_stats`).
        self._in_flight = 0
        self._stats = {"retries": 0, "failures": 0, "max_requests_in_flight": 0}

    # -- metadata --------------------------------------------------------------------

    def metadata(self) -> ModelMetadata:
        """The served model with the prompt set's versions: the prompt set is the model
        version. Checks once that the server serves `model` (when it lists its models),
        so a wrong name fails here instead of dead-lettering every product."""
        if self._metadata is None:
            served = call_with_retries(self._served_models, self.spec.retry, is_transient)
            if served is not None and self.spec.model not in served:
                raise ModelConfigError(
                    f"the server at {self.spec.url} does not serve a model named {self.spec.model!r}; it serves "
                    f"{sorted(served)}. Pass one of them as --openai-model."
                )
            self._metadata = ModelMetadata(
                self.spec.model, self.prompt_set.model_version, self.prompt_set.taxonomy_version
            )
        return self._metadata

    def _served_models(self) -> set[str] | None:
        response = self._http.get(f"{self._base}/models")
        if response.status_code == 404:
            return None  # a server without the listing: requests will tell
        if response.status_code in TRANSIENT_HTTP_STATUSES:
            raise ChatServerError(f"HTTP {response.status_code}: {_error_text(response)}", response.status_code)
        if response.status_code >= 400:
            raise ModelConfigError(
                f"GET {self._base}/models answered HTTP {response.status_code}: {_error_text(response)} "
                f"(a server that wants an API key reads it from ${self.spec.api_key_env})"
            )
        try:
            return {str(m["id"]) for m in response.json()["data"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelConfigError(f"GET {self._base}/models did not answer an OpenAI model list") from exc

    # -- inference -------------------------------------------------------------------

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        # Every item goes to the pool at once; the server batches what is in flight.
        futures = [self._pool.submit(self._answer, request, image) for request, image in requests]
        out: list[bytes | Exception] = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as exc:  # noqa: BLE001 - an item's failure is its answer
                out.append(exc)
        exhausted = [r for r in out if isinstance(r, RetriesExhausted)]
        if out and len(exhausted) == len(out):
            raise ChatServerUnavailable(self.spec.url, len(out), exhausted[0]) from exhausted[0]
        return out

    def _answer(self, raw: bytes, image: bytes | None) -> bytes:
        try:
            request = ModelRequest.model_validate_json(raw)
        except Exception as exc:  # pydantic's ValidationError: JSON and schema errors
            raise ValueError(f"REQUEST is not a valid model request: {_describe(exc)}") from exc
        fixed = prompts.fixed_answer(request)
        if fixed is not None:
            return fixed
        prompt = self.prompt_set.render(request, has_image=image is not None)
        body = json.dumps(
            {
                "model": self.spec.model,
                "messages": chat_messages(prompt, image),
                "stream": False,
                "n": 1,
                **self._sampling[request.task],
            }
        ).encode()

        def on_retry(attempt: int, exc: BaseException) -> None:
            self._count("retries")

        try:
            return call_with_retries(lambda: self._post(body), self.spec.retry, is_transient, on_retry=on_retry)
        except Exception:
            self._count("failures")
            raise

    def _post(self, body: bytes) -> bytes:
        self._track(+1)
        try:
            response = self._http.post(f"{self._base}/chat/completions", content=body)
        finally:
            self._track(-1)
        if response.status_code >= 400:
            raise ChatServerError(f"HTTP {response.status_code}: {_error_text(response)}", response.status_code)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatServerError(
                f"the server's answer has no choices[0].message.content: {_cut(response.text)}", response.status_code
            ) from exc
        if not isinstance(content, str):
            raise ChatServerError(f"choices[0].message.content is {type(content).__name__}, not text")
        return content.encode("utf-8")

    def _track(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._stats["max_requests_in_flight"] = max(self._stats["max_requests_in_flight"], self._in_flight)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def take_stats(self) -> dict[str, int]:
        """Counts since the last call, as TritonClient's: retries, failures (items the
        server or the transport failed, after retries), max_requests_in_flight (the peak)."""
        with self._lock:
            stats, self._stats = self._stats, {"retries": 0, "failures": 0, "max_requests_in_flight": self._in_flight}
        return stats

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " …"


def _error_text(response: httpx.Response) -> str:
    """The server's message: OpenAI's `{"error": {"message"}}`, vLLM's and LMDeploy's
    `{"message"}`, FastAPI's `{"detail"}`, else the body; truncated."""
    try:
        data = response.json()
    except ValueError:
        return _cut(response.text) or response.reason_phrase
    message: Any = data
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            message = error["message"]
        elif isinstance(error, str) and error:
            message = error
        elif data.get("message"):
            message = data["message"]
        elif data.get("detail"):
            message = data["detail"]
    return _cut(message if isinstance(message, str) else json.dumps(message))


def _describe(exc: Exception) -> str:
    """pydantic's errors as `loc: msg` pairs, without its multi-line boilerplate."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in errors()[:3])
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
