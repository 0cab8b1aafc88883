"""The OpenAI-compatible chat backend (transforms/model/openai_chat.py) against a stand-in
chat-completions server on loopback that records what it receives."""

from __future__ import annotations

import base64
import http.server
import json
import pickle
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_repository.contract import ModelAttribute, ModelCategory, ModelProduct, ModelRequest, Task
from model_repository.product_vlm import prompts
from transforms.core import ProductCore
from transforms.model.openai_chat import (
    ChatServerError,
    ChatServerUnavailable,
    OpenAIChatModel,
    chat_messages,
)
from transforms.model.retry import RetriesExhausted, RetryPolicy
from transforms.model.triton import ModelConfigError

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02, budget_s=5.0)
DRESSES = "Apparel & Accessories > Clothing > Dresses"
DRESSES_ID = "gid://shopify/TaxonomyCategory/aa-1-4"
JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"

Reply = tuple[int, Any]  # (HTTP status, JSON body)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def _task(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return "extract" if "You extract product attributes" in system else "classify"


def _user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def _default_reply(body: dict[str, Any]) -> Reply:
    if _task(body) == "classify":
        answer = {"category": DRESSES, "confidence": 0.93, "simplified_description": "A red dress."}
    else:
        answer = {"attributes": {"color": ["Red"], "neckline": ["V-neck"]}}
    return 200, _completion(json.dumps(answer))


class StandIn:
    """An OpenAI-compatible server: GET /v1/models, POST /v1/chat/completions answered by
    `reply(body)`; every chat request is recorded with its headers."""

    def __init__(self) -> None:
        self.reply: Callable[[dict[str, Any]], Reply] = _default_reply
        self.models = ["stand-in"]
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: httpx pools the connections

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in stand_in.models]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"detail": "Not Found"})
                    return
                with stand_in.lock:
                    stand_in.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self._send(*stand_in.reply(body))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, body in self.requests]


@pytest.fixture
def server() -> Iterator[StandIn]:
    stand_in = StandIn()
    stand_in.thread.start()
    yield stand_in
    stand_in.httpd.shutdown()
    stand_in.httpd.server_close()


def _classify(title: str = "Women's red v-neck dress", **kw: Any) -> bytes:
    return ModelRequest(task=Task.CLASSIFY, product=ModelProduct(title=title), **kw).model_dump_json().encode()


def _extract(title: str = "Women's red v-neck dress") -> bytes:
    return (
        ModelRequest(
            task=Task.EXTRACT,
            product=ModelProduct(title=title, description="A summer dress in red cotton."),
            category=ModelCategory(id=DRESSES_ID, full_name=DRESSES),
            attributes=(ModelAttribute(handle="color", name="Color", values=("Blue", "Red")),),
        )
        .model_dump_json()
        .encode()
    )


# -- (a) the messages ------------------------------------------------------------------


def _text_of(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        content = m["content"]
        out.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return "".join(out)


def test_chat_messages_of_the_rendered_classify_prompt() -> None:
    prompt_set = prompts.PromptSet.load()
    request = ModelRequest.model_validate_json(_classify())

    with_image = chat_messages(prompt_set.render(request, has_image=True), JPEG)
    assert [m["role"] for m in with_image] == ["system", "user"]
    assert with_image[0]["content"].startswith("You classify merchant products")
    assert "<|" not in _text_of(with_image)  # no chat or vision markers left
    image_part, text_part = with_image[1]["content"]
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == JPEG
    assert text_part == {"type": "text", "text": "Title: Women's red v-neck dress"}

    text_only = chat_messages(prompt_set.render(request, has_image=False), None)
    assert [m["role"] for m in text_only] == ["system", "user"]
    assert text_only[1]["content"] == "Title: Women's red v-neck dress"
    assert text_only[0] == with_image[0]


def test_chat_messages_put_the_extract_image_between_its_texts() -> None:
    prompt = prompts.PromptSet.load().render(ModelRequest.model_validate_json(_extract()), has_image=True)
    user = chat_messages(prompt, JPEG)[1]["content"]
    assert [p["type"] for p in user] == ["text", "image_url", "text"]
    assert (
        user[0]["text"].startswith(f"Category: {DRESSES}\n") and '- color (Color): ["Blue", "Red"]' in user[0]["text"]
    )
    assert user[2]["text"].startswith("Product:\nTitle: Women's red v-neck dress")


def _qwen_chat_template(messages: list[dict[str, Any]]) -> str:
    """Qwen2.5-VL's Hugging Face chat template (tokenizer_config / chat_template.json), in
    Python, with add_generation_prompt: what vLLM's chat server applies to the messages."""
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = "".join(prompts.IMAGE_PLACEHOLDER if "image_url" in p else p.get("text", "") for p in content)
        out.append(f"<|im_start|>{m['role']}\n{content}<|im_end|>\n")
    return "".join(out) + "<|im_start|>assistant\n"


@pytest.mark.parametrize("image", [JPEG, None])
@pytest.mark.parametrize("raw", [_classify(), _extract()], ids=["classify", "extract"])
def test_the_chat_template_gives_back_the_raw_prompt(raw: bytes, image: bytes | None) -> None:
    prompt = prompts.PromptSet.load().render(ModelRequest.model_validate_json(raw), has_image=image is not None)
    assert _qwen_chat_template(chat_messages(prompt, image)) == prompt


def test_chat_messages_refuse_a_prompt_that_disagrees_with_the_image() -> None:
    prompt_set = prompts.PromptSet.load()
    request = ModelRequest.model_validate_json(_classify())
    with pytest.raises(ValueError, match="placeholder"):
        chat_messages(prompt_set.render(request, has_image=False), JPEG)
    with pytest.raises(ValueError, match="placeholder"):
        chat_messages(prompt_set.render(request, has_image=True), None)
    with pytest.raises(ValueError, match="assistant"):
        chat_messages("<|im_start|>user\nhi<|im_end|>\n", None)


def test_request_body_carries_the_messages_the_model_and_greedy_sampling(server: StandIn) -> None:
    client = OpenAIChatModel(server.url, "stand-in", retry=FAST)()
    try:
        answers = client.infer_batch([(_classify(), JPEG), (_extract(), None)])
    finally:
        client.close()
    assert all(isinstance(a, bytes) for a in answers)
    by_task = {_task(b): b for b in server.bodies()}
    classify, extract = by_task["classify"], by_task["extract"]
    for body in (classify, extract):
        assert body["model"] == "stand-in" and body["temperature"] == 0.0 and body["top_p"] == 1.0
        assert body["stream"] is False
    # product_vlm's config.pbtxt bounds, per task
    assert classify["max_tokens"] == 384 and extract["max_tokens"] == 256
    assert classify["messages"][1]["content"][0]["type"] == "image_url"
    assert isinstance(extract["messages"][1]["content"], str)


# -- (b) end to end through the product core ------------------------------------------


def _event(pid: str, title: str) -> bytes:
    return json.dumps(
        {
            "event_id": f"e-{pid}",
            "type": "create",
            "product_id": pid,
            "shop_id": "s",
            "occurred_at": "2026-11-01T00:00:00Z",
            "product": {"title": title, "description_html": "<p>A v-neck summer dress in red.</p>"},
        }
    ).encode()


def test_product_core_predicts_through_the_chat_server(server: StandIn, sample_taxonomy) -> None:
    client = OpenAIChatModel(server.url, "stand-in", retry=FAST)()
    try:
        meta = client.metadata()
        manifest = prompts.PromptSet.load()
        assert (meta.name, meta.model_version, meta.taxonomy_version) == (
            "stand-in",
            manifest.model_version,
            manifest.taxonomy_version,
        )
        result = ProductCore(client, sample_taxonomy).predict([_event("p1", "Red v-neck dress")])
    finally:
        client.close()

    assert not result.dead_letters
    (prediction,) = result.predictions
    assert prediction.category is not None and prediction.category.id == DRESSES_ID
    assert prediction.model_version == manifest.model_version
    assert prediction.taxonomy_version == sample_taxonomy.version
    values = {a.handle: [v.name for v in a.values] for a in prediction.attributes}
    assert values["color"] == ["Red"]
    # One classify and one extract call; the extract prompt lists the Dresses attributes.
    bodies = server.bodies()
    assert sorted(_task(b) for b in bodies) == ["classify", "extract"]
    extract = next(b for b in bodies if _task(b) == "extract")
    assert f"Category: {DRESSES}" in _user_text(extract) and "- color (Color):" in _user_text(extract)


def test_metadata_refuses_a_model_the_server_does_not_serve(server: StandIn) -> None:
    client = OpenAIChatModel(server.url, "other-model", retry=FAST)()
    try:
        with pytest.raises(ModelConfigError, match="'other-model'.*stand-in"):
            client.metadata()
    finally:
        client.close()


# -- (c), (d), (e): retries and failures -----------------------------------------------


def test_a_503_is_retried_and_counted(server: StandIn) -> None:
    calls = []

    def flaky(body: dict[str, Any]) -> Reply:
        calls.append(1)
        if len(calls) == 1:
            return 503, {"error": {"message": "engine is loading"}}
        return _default_reply(body)

    server.reply = flaky
    client = OpenAIChatModel(server.url, "stand-in", retry=FAST)()
    try:
        (answer,) = client.infer_batch([(_classify(), None)])
        stats = client.take_stats()
        assert client.take_stats()["retries"] == 0  # counts since the last take
    finally:
        client.close()
    assert isinstance(answer, bytes) and json.loads(answer)["category"] == DRESSES
    assert len(calls) == 2
    assert stats["retries"] == 1 and stats["failures"] == 0 and stats["max_requests_in_flight"] >= 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_fails_the_whole_call() -> None:
    client = OpenAIChatModel(f"http://127.0.0.1:{_closed_port()}/v1", "stand-in", retry=FAST)()
    try:
        with pytest.raises(ChatServerUnavailable, match="all 2 requests") as info:
            client.infer_batch([(_classify(), None), (_extract(), None)])
        stats = client.take_stats()
    finally:
        client.close()
    assert isinstance(info.value, RetriesExhausted)  # what the CLI reports as a failed run
    assert stats["failures"] == 2 and stats["retries"] == 2 * (FAST.max_attempts - 1)


def test_a_400_fails_only_its_item(server: StandIn) -> None:
    def picky(body: dict[str, Any]) -> Reply:
        if "too long" in _user_text(body):
            return 400, {"object": "error", "message": "This model's maximum context length is 32768. " + "x" * 2000}
        return _default_reply(body)

    server.reply = picky
    client = OpenAIChatModel(server.url, "stand-in", retry=FAST)()
    try:
        first, bad, last = client.infer_batch([(_classify(), None), (_classify("too long"), None), (_extract(), None)])
        stats = client.take_stats()
    finally:
        client.close()
    assert json.loads(first)["category"] == DRESSES
    assert json.loads(last) == {"attributes": {"color": ["Red"], "neckline": ["V-neck"]}}
    assert isinstance(bad, ChatServerError) and bad.status == 400
    assert "HTTP 400" in str(bad) and "maximum context length is 32768" in str(bad)
    assert len(str(bad)) < 600  # the server's message, truncated
    assert len(server.bodies()) == 3  # a 400 is not retried
    assert stats["retries"] == 0 and stats["failures"] == 1


def test_contract_errors_and_fixed_answers_need_no_server(server: StandIn) -> None:
    no_attributes = ModelRequest(
        task=Task.EXTRACT, product=ModelProduct(title="x"), category=ModelCategory(id=DRESSES_ID, full_name=DRESSES)
    )
    client = OpenAIChatModel(server.url, "stand-in", retry=FAST)()
    try:
        broken, fixed = client.infer_batch(
            [(b'{"task": "classify"}', None), (no_attributes.model_dump_json().encode(), None)]
        )
    finally:
        client.close()
    assert isinstance(broken, ValueError) and "not a valid model request" in str(broken) and "product" in str(broken)
    assert fixed == b'{"attributes": {}}'
    assert server.bodies() == []


def test_all_items_are_in_flight_at_once(server: StandIn) -> None:
    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(0.2)
        return _default_reply(body)

    server.reply = slow
    client = OpenAIChatModel(server.url, "stand-in", max_concurrency=8, retry=FAST)()
    try:
        answers = client.infer_batch([(_classify(f"dress {i}"), None) for i in range(8)])
        stats = client.take_stats()
    finally:
        client.close()
    assert all(isinstance(a, bytes) for a in answers)
    assert stats["max_requests_in_flight"] >= 2


# -- (f) the API key --------------------------------------------------------------------


def test_bearer_header_comes_from_the_named_env_var(server: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    factory = OpenAIChatModel(server.url, "stand-in", api_key_env="TEST_OPENAI_KEY", retry=FAST)
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    client = factory()
    client.infer_batch([(_classify(), None)])
    client.close()
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-secret-123")
    client = factory()
    client.infer_batch([(_classify(), None)])
    client.close()
    (without, _), (with_key, _) = server.requests
    assert "authorization" not in without
    assert with_key["authorization"] == "Bearer sk-secret-123"
    assert b"sk-secret-123" not in pickle.dumps(factory)  # the key never sits in the factory


# -- (g) candidate mode ----------------------------------------------------------------


def test_candidate_mode_without_candidates_fails_that_item(server: StandIn, tmp_path: Path) -> None:
    prompts_dir = tmp_path / "prompts"
    shutil.copytree(prompts.DEFAULT_PROMPTS_DIR, prompts_dir)
    manifest = json.loads((prompts_dir / "manifest.json").read_text())
    manifest.update(classify_mode="candidates", model_version="stock-qwen-candidates-1")
    (prompts_dir / "manifest.json").write_text(json.dumps(manifest))

    client = OpenAIChatModel(server.url, "stand-in", prompts_dir=str(prompts_dir), retry=FAST)()
    try:
        assert client.metadata().model_version == "stock-qwen-candidates-1"
        with_candidates = _classify(candidates=[{"id": DRESSES_ID, "full_name": DRESSES, "score": 0.8}])
        missing, listed, extract = client.infer_batch(
            [(_classify(), None), (with_candidates, None), (_extract(), None)]
        )
    finally:
        client.close()
    assert isinstance(missing, ValueError) and "--classify-candidates" in str(missing)
    assert isinstance(listed, bytes) and isinstance(extract, bytes)
    bodies = server.bodies()
    assert len(bodies) == 2  # the unrenderable item never reached the server
    classify = next(b for b in bodies if _task(b) == "classify")
    assert f"1. {DRESSES}" in _user_text(classify)


# -- (h) the factory -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "localhost:23333", "127.0.0.1:23333/v1", "ftp://host/v1", "http://", "grpc://h:1"])
def test_factory_refuses_a_url_without_http_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="--openai-url"):
        OpenAIChatModel(url, "stand-in")


def test_factory_validates_and_pickles() -> None:
    with pytest.raises(ValueError, match="--openai-model"):
        OpenAIChatModel("http://127.0.0.1:1/v1", " ")
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIChatModel("http://127.0.0.1:1/v1", "m", max_concurrency=0)
    factory = OpenAIChatModel("https://llm.internal/v1/", "m", timeout_s=5.0)
    assert pickle.loads(pickle.dumps(factory)) == factory
    assert factory.prompts_directory == str(prompts.DEFAULT_PROMPTS_DIR)
