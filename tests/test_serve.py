"""`r1kit serve` through a real server on 127.0.0.1 (uvicorn in a thread, one per test module),
driven by the official `openai` client (max_retries=0, so 429s and 5xx are not retried away) and
by httpx: answers equal the engine's own, reasoning apart, errors in OpenAI's shape, metrics,
disconnects that free KV blocks, backpressure, and a clean stop on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi", reason="r1kit serve needs the serve extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="the server tests drive the official openai client (test extra)")
import httpx  # noqa: E402  (after the skips: the test extra brings it)

from conftest import make_model  # noqa: E402
from r1kit.data.tokenizer import Tokenizer  # noqa: E402
from r1kit.format import SPECIAL_TOKENS  # noqa: E402
from r1kit.inference.engine import Engine, SamplingParams  # noqa: E402
from r1kit.serve.server import make_server  # noqa: E402

CORPUS = ["Tom has 12 apples and buys 7 more. How many apples does he have?", "12 + 7 = 19\n</think>\n#### 19",
          "Ana reads 30 pages a day for 4 days. How many pages?", "30 * 4 = 120\n</think>\n#### 120"] * 10
THINK_AT, EOS_AT = 100, 110  # positions where the model is made to close its reasoning, then to end
QUESTIONS = ["Tom has 12 apples and buys 7 more. How many?", "Ana reads 30 pages a day for 4 days.",
             "What is 12 + 7?", "How many pages does Ana read?"]


def _model(tok):
    """A random tiny model made to write </think> at position THINK_AT and EOS at EOS_AT (a logits
    hook), so that every greedy answer has reasoning, an answer and an end, at any prompt length."""
    torch.manual_seed(0)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192)
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    special = [tok.encode(t)[0] for t in SPECIAL_TOKENS]

    def force(_module, args, kwargs, logits):
        positions = args[1]
        if kwargs.get("logits_at_BT") is not None:
            positions = positions[kwargs["logits_at_BT"]]
        else:
            positions = positions[..., -1] if logits.dim() == 3 else positions
        bias = torch.zeros_like(logits)
        bias[..., special] = -1e4  # no special token but the forced ones
        for at, token in ((THINK_AT, tok.end_think_id), (EOS_AT, tok.eos_id)):
            hit = (positions == at - 1)
            bias[..., token] += 2e4 * hit.to(logits.dtype).reshape(hit.shape + (1,) * (logits.dim() - hit.dim()))[..., 0]
        return logits + bias

    model.register_forward_hook(force, with_kwargs=True)
    return model.eval()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, engine, **kwargs):
        self.port = _free_port()
        self.server, self.loop = make_server(engine, port=self.port, model_name="tiny", log_level="warning", **kwargs)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, key="none"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, vocab_size=200)


@pytest.fixture(scope="module")
def model(tok):
    return _model(tok)


@pytest.fixture(scope="module")
def served(model, tok):
    s = Served(Engine(model, tok, max_batch_size=16))
    yield s
    s.close()


def _reference(model, tok, question, **params):
    """The engine's own answer, streamed: (reasoning, answer) texts."""
    deltas = list(Engine(model, tok).stream(question, SamplingParams(**params)))
    return ("".join(d.text for d in deltas if d.channel == "reasoning"),
            "".join(d.text for d in deltas if d.channel == "answer"))


def test_models_and_greedy_chat_equal_the_engine_streamed_or_not(served, model, tok):
    client = served.client()
    assert [m.id for m in client.models.list().data] == ["tiny"]
    for question in QUESTIONS[:2]:
        reasoning, answer = _reference(model, tok, question, max_new_tokens=80)
        assert reasoning and answer  # the hook makes both channels non-empty
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": question}],
                                               temperature=0, max_tokens=80)
        message = reply.choices[0].message
        assert (message.reasoning_content, message.content) == (reasoning, answer)
        assert reply.choices[0].finish_reason == "stop"
        usage = reply.usage
        assert usage.prompt_tokens == len(tok.encode_prompt(question))
        assert usage.completion_tokens_details.reasoning_tokens == THINK_AT - usage.prompt_tokens
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": question}],
                                                temperature=0, max_tokens=80, stream=True,
                                                stream_options={"include_usage": True})
        got_reasoning, got_answer, order, last = "", "", [], None
        for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                if getattr(delta, "reasoning_content", None):
                    got_reasoning += delta.reasoning_content
                    order.append("r")
                if delta.content:
                    got_answer += delta.content
                    order.append("a")
            last = chunk
        assert (got_reasoning, got_answer) == (reasoning, answer)
        assert order == sorted(order, reverse=True)  # every reasoning chunk before the first answer chunk
        assert last.usage.completion_tokens == usage.completion_tokens
        assert last.usage.prompt_tokens_details.cached_tokens > 0  # the same prompt, again: its blocks were cached


def test_a_stream_that_fell_behind_sends_its_backlog_as_one_chunk_per_channel(model, tok):
    """Steps that piled up on a request's queue before its handler ran go out merged (one reasoning
    chunk, one answer chunk, the end), and the text is the same as token by token."""
    import asyncio

    from r1kit.inference.engine import TokenEvent
    from r1kit.serve.app import _Reply, _stream
    from r1kit.serve.loop import Finished
    from r1kit.serve.metrics import ServerMetrics
    from r1kit.serve.protocol import ChatCompletionRequest

    engine = Engine(model, tok)
    question = QUESTIONS[0]
    prompt_ids = tok.encode_prompt(question)
    output = engine.generate([question], SamplingParams(max_new_tokens=80))[0]
    token_ids = output.samples[0].token_ids
    body = ChatCompletionRequest(model="tiny", messages=[{"role": "user", "content": question}], stream=True)

    async def chunks(steps_per_item: int) -> list[str]:
        queue = asyncio.Queue()
        for at in range(0, len(token_ids), steps_per_item):
            queue.put_nowait([TokenEvent(0, 0, t, 0.0, "stop" if at + j == len(token_ids) - 1 else None)
                              for j, t in enumerate(token_ids[at:at + steps_per_item])])
        queue.put_nowait(Finished(output))
        reply = _Reply("chatcmpl", body, prompt_ids, tok, engine.stop_ids(SamplingParams()), ())
        return [c async for c in _stream(None, 0, queue, reply, ServerMetrics(engine))]

    def text(chunk_list):
        deltas = [json.loads(c[6:])["choices"][0]["delta"] for c in chunk_list if c != "data: [DONE]\n\n"]
        return "".join(d.get("reasoning_content", "") for d in deltas), "".join(d.get("content", "") for d in deltas)

    for steps_per_item in (1, 7):  # every step waiting on the queue already, one token or seven each
        merged = asyncio.run(chunks(steps_per_item))
        assert len(merged) == 4  # reasoning, answer, the end, [DONE]
        assert text(merged) == _reference(model, tok, question, max_new_tokens=80)


def test_n_seed_stop_and_completions(served, model, tok):
    client = served.client()
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    a = client.chat.completions.create(model="tiny", messages=messages, n=2, temperature=1.0, seed=7, max_tokens=20)
    b = client.chat.completions.create(model="tiny", messages=messages, n=2, temperature=1.0, seed=7, max_tokens=20)
    texts = [(c.message.reasoning_content, c.message.content) for c in a.choices]
    assert len(texts) == 2 and texts == [(c.message.reasoning_content, c.message.content) for c in b.choices]
    reasoning, _ = _reference(model, tok, QUESTIONS[0], max_new_tokens=60)
    stop = reasoning[3:6]
    cut = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=60, stop=[stop])
    assert cut.choices[0].message.reasoning_content == reasoning[: reasoning.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    done = client.completions.create(model="tiny", prompt="Tom has 12 apples", max_tokens=5, temperature=0)
    prompt_ids = [tok.bos_id] + tok.encode_literal("Tom has 12 apples")
    expected = Engine(model, tok).generate([prompt_ids], SamplingParams(max_new_tokens=5))[0].samples[0].text
    assert done.choices[0].text == expected and done.usage.prompt_tokens == len(prompt_ids)


@pytest.mark.parametrize("kwargs, error, param, code", [
    (dict(model="other"), "NotFoundError", "model", "model_not_found"),
    (dict(temperature=3.0), "BadRequestError", "temperature", None),
    (dict(n=0), "BadRequestError", "n", None),
    (dict(extra_body={"tools": [{"type": "function", "function": {"name": "f"}}]}), "BadRequestError", "tools", "unsupported_parameter"),
    (dict(extra_body={"logit_bias": {"5": 10}}), "BadRequestError", "logit_bias", "unsupported_parameter"),
    (dict(max_tokens=10_000), "BadRequestError", "max_tokens", "context_length_exceeded"),
    (dict(messages=[{"role": "user", "content": "pages " * 400}]), "BadRequestError", "messages", "context_length_exceeded"),
    (dict(extra_body={"precision": "fp16"}), "BadRequestError", None, None),
])
def test_errors_come_in_openais_shape_and_as_the_clients_exceptions(served, kwargs, error, param, code):
    request = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4) | kwargs
    with pytest.raises(getattr(openai, error)) as caught:
        served.client().chat.completions.create(**request)
    body = caught.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert (body["param"], body["code"]) == (param, code)


def test_unknown_fields_are_ignored_and_neutral_values_accepted(served):
    reply = served.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0,
        frequency_penalty=0, presence_penalty=0.0, extra_body={"tools": [], "not_a_field": 1})
    assert reply.choices[0].message.reasoning_content is not None


def test_include_reasoning_false_and_earlier_reasoning_sent_back_is_dropped(served):
    client = served.client()
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3,
                                           temperature=0, extra_body={"include_reasoning": False})
    assert getattr(plain.choices[0].message, "reasoning_content", None) is None
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "#### 5"}, {"role": "user", "content": "and?"}]
    with_reasoning = [dict(m) for m in turns]
    with_reasoning[1]["reasoning_content"] = "2 + 3 = 5"
    a, b = (client.chat.completions.create(model="tiny", messages=m, max_tokens=3, temperature=0) for m in (turns, with_reasoning))
    assert a.usage.prompt_tokens == b.usage.prompt_tokens and a.choices[0].message == b.choices[0].message


def test_special_tokens_in_user_text_stay_text(served, tok):
    reply = served.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": "</think> #### 5 <|eos|>"}],
                                                    max_tokens=2, temperature=0)
    expected = tok.encode_conversation([{"role": "user", "content": "</think> #### 5 <|eos|>"}])
    assert reply.usage.prompt_tokens == len(expected)
    assert tok.end_think_id not in expected[2:-2] and tok.eos_id not in expected


def test_health_metrics_and_the_page_are_public_and_the_api_needs_the_key(model, tok):
    s = Served(Engine(model, tok), api_key="sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        assert [m.id for m in s.client("sesame").models.list().data] == ["tiny"]
        s.client("sesame").chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert httpx.get(s.url + "/health").json() == {"status": "ok"}
        page = httpx.get(s.url + "/")
        assert page.status_code == 200 and "/v1/chat/completions" in page.text and "http" not in page.text.split("<script>")[1].split("fetch(")[0]
        metrics = httpx.get(s.url + "/metrics").text
        for name in ("r1kit:num_requests_running", "r1kit:num_requests_waiting", "r1kit:prompt_tokens_total",
                     "r1kit:generation_tokens_total", "r1kit:time_to_first_token_seconds_bucket",
                     "r1kit:time_per_output_token_seconds_bucket", "r1kit:kv_cache_usage_perc", "r1kit:prefix_cache_hit_rate"):
            assert name in metrics, name
        generated = [line for line in metrics.splitlines() if line.startswith("r1kit:generation_tokens_total")]
        assert float(generated[0].split()[-1]) > 0
    finally:
        s.close()


def test_a_client_that_disconnects_frees_its_kv_blocks(served):
    body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTIONS[1]}], "max_tokens": 50,
            "temperature": 0, "stream": True}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", served.url + "/v1/chat/completions", json=body) as response:
            next(response.iter_lines())  # one chunk, then hang up
    deadline = time.monotonic() + 5
    while served.loop.engine.stats().blocks_used or served.loop.engine.num_running:
        assert time.monotonic() < deadline, f"blocks still held: {served.loop.engine.stats()}"
        time.sleep(0.02)


def test_sixty_four_streams_get_their_own_answers_and_a_full_queue_gets_429(model, tok):
    s = Served(Engine(model, tok, max_batch_size=8), max_queue=4)  # 8 running, 4 waiting: the rest must get 429
    questions = [f"{q} ({k})" for k in range(16) for q in QUESTIONS]  # 64 distinct prompts
    expected = {q: "".join(_reference(model, tok, q, max_new_tokens=40)) for q in set(questions)}

    def one(question):
        body = {"model": "tiny", "messages": [{"role": "user", "content": question}], "max_tokens": 40,
                "temperature": 0, "stream": True}
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", s.url + "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    return question, response.status_code, None
                text = ""
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        delta = json.loads(line[6:])["choices"][0]["delta"] if json.loads(line[6:])["choices"] else {}
                        text += delta.get("reasoning_content", "") + delta.get("content", "")
                return question, 200, text

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, questions))
        assert time.monotonic() - started < 30
        statuses = [status for _, status, _ in results]
        assert not [st for st in statuses if st >= 500]
        assert set(statuses) <= {200, 429} and statuses.count(429) > 0 and statuses.count(200) >= 12
        for question, status, text in results:
            if status == 200:
                assert text == expected[question], question
    finally:
        s.close()


def test_sigterm_lets_in_flight_requests_finish_and_the_server_exits(tmp_path, model, tok):
    from r1kit.interop.checkpoint import save_pretrained

    plain = make_model(vocab_size=tok.vocab_size, max_seq_len=192)  # the saved weights (no hook)
    plain.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    save_pretrained(plain, tmp_path / "ckpt", extra=tok.save)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "r1kit.cli", "serve", str(tmp_path / "ckpt"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "slow start"
            time.sleep(0.1)
        body = {"model": "ckpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, "temperature": 0,
                "stream": True}
        lines = []
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if not lines:
                        proc.send_signal(signal.SIGTERM)  # mid-stream
                    if line:
                        lines.append(line)
        assert len(lines) > 2 and lines[-1] == "data: [DONE]"  # the in-flight request finished
        # uvicorn shuts down gracefully, then re-raises the signal: exit by SIGTERM, after a clean shutdown
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def _browser():
    """Headless Chromium through selenium with Debian's chromium-driver, or the reason there is none.
    Under CI=1 a missing browser fails the test instead (.ci/run installs it)."""
    import shutil

    reason = None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[test]')"
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = "/usr/bin/chromedriver"
    if reason is None and (binary is None or not os.path.exists(driver_path)):
        reason = "no chromium / chromium-driver here (Debian: apt-get install chromium chromium-driver; .ci/run does)"
    if reason is not None:
        if os.environ.get("CI") == "1":
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    # the driver is passed explicitly: selenium's manager would try to download one
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_the_chat_page_streams_reasoning_and_answer_in_a_real_browser_over_two_turns(served, model, tok):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(served.url + "/")
        wait = WebDriverWait(browser, 30)
        conversation = []
        for turn, question in enumerate(QUESTIONS[:2]):
            browser.find_element(By.ID, "question").send_keys(question)
            browser.find_element(By.ID, "send").click()
            conversation.append({"role": "user", "content": question})
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".assistant .stats")) == turn + 1
                       and "tokens/s" in b.find_elements(By.CSS_SELECTOR, ".assistant .stats")[turn].text)
            box = browser.find_elements(By.CSS_SELECTOR, ".assistant")[turn]
            shown_reasoning = box.find_element(By.CSS_SELECTOR, "details.reasoning div").get_attribute("textContent")
            shown_answer = box.find_element(By.CSS_SELECTOR, ".answer").get_attribute("textContent")
            deltas = list(Engine(model, tok).stream(tok.encode_conversation(conversation), SamplingParams(max_new_tokens=192)))
            assert shown_reasoning == "".join(d.text for d in deltas if d.channel == "reasoning")
            assert shown_answer == "".join(d.text for d in deltas if d.channel == "answer") != ""
            conversation.append({"role": "assistant", "content": shown_answer})
        assert not browser.find_elements(By.CSS_SELECTOR, ".error")
    finally:
        browser.quit()


# ---------------------------------------------------------------------- schema fuzzing


def test_fuzzed_requests_from_the_openapi_schema_never_get_a_5xx(served):
    """Every operation of the server's own OpenAPI document (FastAPI's /openapi.json), fuzzed by
    schemathesis's Hypothesis strategies, a bounded number of examples each."""
    schemathesis = pytest.importorskip("schemathesis", reason="schema fuzzing needs schemathesis (test extra)")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"}
    statuses: list[int] = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            response = case.call(timeout=30)
            statuses.append(response.status_code)
            assert response.status_code < 500, (operation.path, response.status_code, response.text[:300])

        call()
    assert len(statuses) >= 4 * 10 and 200 in statuses and 400 in statuses  # valid and invalid requests were both tried
