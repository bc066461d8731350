"""The OpenAI-compatible HTTP API over one engine (FastAPI), and the chat page.

    GET  /v1/models              the one model served
    POST /v1/chat/completions    messages in r1kit's chat format; the reasoning apart from the answer
                                 (`message.reasoning_content`, streamed as `delta.reasoning_content`)
    POST /v1/completions         raw text in, text out
    GET  /health                 public
    GET  /metrics                Prometheus text, public (as vLLM's)
    GET  /                       the chat page (static, no CDN), public; it asks for the key if one is set

Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}}: 400 for a malformed
or out-of-range request (naming the field; `context_length_exceeded` for a prompt beyond the
context), 401 without the right key (compared in constant time), 404 for an unknown model, 429
when the queue is full, 503 while shutting down. User text is encoded literally: it can never
spell a special token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from r1kit.inference.dynamic import check_precision
from r1kit.inference.engine import RequestOutput, SamplingParams, TokenEvent
from r1kit.inference.text_stream import TextStream
from r1kit.serve.loop import EngineLoop, Finished, QueueFull, ShuttingDown
from r1kit.serve.metrics import ServerMetrics
from r1kit.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    RequestError,
    error_body,
    unsupported_fields,
)

log = logging.getLogger("r1kit.serve")
PAGE = Path(__file__).parent / "static" / "chat.html"


@dataclass
class Limits:
    """Request limits in the spirit of nanochat's chat_web.py; each configurable."""

    max_messages: int = 200  # a conversation longer than the context cannot be served anyway
    max_message_chars: int = 8_000  # one message
    max_total_chars: int = 32_000  # all messages: ~10x the demo model's context in characters
    poll_disconnect_s: float = 0.5  # a non-streamed request checks this often whether its client left


def build_app(loop: EngineLoop, model_name: str, api_key: str | None = None, limits: Limits | None = None) -> FastAPI:
    engine, tok = loop.engine, loop.engine.tokenizer
    limits = limits or Limits()
    metrics = ServerMetrics(engine)
    loop.on_step = metrics.on_step
    @asynccontextmanager
    async def lifespan(_app):
        loop.start()
        yield
        await asyncio.to_thread(loop.stop, 1.0)  # in-flight requests had uvicorn's grace period already

    app = FastAPI(title="r1kit", version="1", lifespan=lifespan)
    app.state.loop, app.state.metrics = loop, metrics

    # ------------------------------------------------------------------ errors in OpenAI's shape

    def error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, kind, param, code), status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, e: RequestError):
        return error(e.status, e.message, e.kind, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, e: RequestValidationError):
        first = e.errors()[0]
        where = [str(p) for p in first["loc"] if p != "body"]
        param = ".".join(where) or None
        return error(400, f"{param or 'body'}: {first['msg']}", "invalid_request_error", param)

    if api_key is not None:
        app.add_middleware(_KeyCheck, expected=f"Bearer {api_key}".encode())

    # ------------------------------------------------------------------ public routes

    @app.get("/health")
    async def health():
        if loop.stopping:
            return error(503, "the server is shutting down", "service_unavailable")
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ the API

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "r1kit",
                                            "max_model_len": engine.max_seq_len}]}

    def check_common(body, prompt_ids: list[int], max_tokens: int | None) -> SamplingParams:
        if body.model != model_name:
            raise RequestError(f"the model {body.model!r} does not exist; this server has {model_name!r}", "model",
                               "model_not_found", 404, "not_found_error")
        ignored = unsupported_fields(body)
        if ignored:
            log.warning("ignoring unknown field(s) %s", ", ".join(sorted(ignored)))
        context = engine.max_seq_len
        if len(prompt_ids) >= context:
            raise RequestError(f"the prompt has {len(prompt_ids)} tokens; this model's context is {context}",
                               "messages" if isinstance(body, ChatCompletionRequest) else "prompt", "context_length_exceeded")
        if max_tokens is not None and len(prompt_ids) + max_tokens > context:
            raise RequestError(f"the prompt's {len(prompt_ids)} tokens and max_tokens={max_tokens} exceed this model's "
                               f"context of {context}", "max_tokens", "context_length_exceeded")
        if body.stream_options is not None and not body.stream:
            raise RequestError("stream_options is only allowed with stream: true", "stream_options")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if any(not s for s in stop) or len(stop) > 4:
            raise RequestError("stop takes up to 4 non-empty strings", "stop")
        top_k = None if body.top_k in (None, -1, 0) else body.top_k
        try:
            params = SamplingParams(max_new_tokens=max_tokens or context - len(prompt_ids), temperature=body.temperature,
                                    top_k=top_k, top_p=None if body.top_p == 1.0 else body.top_p, seed=body.seed,
                                    n=body.n, stop=tuple(stop), precision=body.precision, cache_salt=body.cache_salt)
            params.check()
            check_precision(params.precision or engine.dtype, engine.device)
        except ValueError as e:
            raise RequestError(str(e)) from None
        return params

    def chat_prompt(body: ChatCompletionRequest) -> list[int]:
        if len(body.messages) > limits.max_messages:
            raise RequestError(f"at most {limits.max_messages} messages, got {len(body.messages)}", "messages")
        messages, total = [], 0
        for i, m in enumerate(body.messages):
            text = m.text(i)
            if len(text) > limits.max_message_chars:
                raise RequestError(f"messages[{i}] has {len(text)} characters; the limit is {limits.max_message_chars}",
                                   f"messages[{i}].content")
            total += len(text)
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": text})
        if total > limits.max_total_chars:
            raise RequestError(f"the messages hold {total} characters; the limit is {limits.max_total_chars}", "messages")
        if messages[-1]["role"] != "user":
            raise RequestError("the last message must be the user's", "messages")
        try:
            return tok.encode_conversation(messages)
        except ValueError as e:
            raise RequestError(str(e), "messages") from None

    async def submit(prompt_ids: list[int], params: SamplingParams):
        try:
            request_id, queue = loop.submit(prompt_ids, params)
        except QueueFull as e:
            raise RequestError(str(e), code="rate_limit_exceeded", status=429, kind="rate_limit_error") from None
        except ShuttingDown as e:
            raise RequestError(str(e), status=503, kind="service_unavailable") from None
        except ValueError as e:
            raise RequestError(str(e)) from None
        metrics.request_started(len(prompt_ids))
        return request_id, queue

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        if body.top_logprobs and not body.logprobs:
            raise RequestError("top_logprobs needs logprobs: true", "top_logprobs")
        if body.top_logprobs:
            raise RequestError("top_logprobs > 0 is not supported: the engine keeps the chosen token's log-probability only",
                               "top_logprobs", "unsupported_parameter")
        prompt_ids = chat_prompt(body)
        params = check_common(body, prompt_ids, body.max_completion_tokens or body.max_tokens)
        request_id, queue = await submit(prompt_ids, params)
        reply = _Reply("chatcmpl", body, prompt_ids, tok, engine.stop_ids(params), params.stop)
        if body.stream:
            return StreamingResponse(_stream(loop, request_id, queue, reply, metrics), media_type="text/event-stream")
        return await _collect(loop, request_id, queue, reply, request, limits, metrics)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise RequestError("one prompt per request (send a list of one, or a string)", "prompt")
            body.prompt = body.prompt[0]
        if body.logprobs:
            raise RequestError("logprobs > 0 is not supported for completions", "logprobs", "unsupported_parameter")
        if len(body.prompt) > limits.max_total_chars:
            raise RequestError(f"the prompt holds {len(body.prompt)} characters; the limit is {limits.max_total_chars}", "prompt")
        prompt_ids = [tok.bos_id] + tok.encode_literal(body.prompt)
        params = check_common(body, prompt_ids, body.max_tokens)
        request_id, queue = await submit(prompt_ids, params)
        reply = _Reply("cmpl", body, prompt_ids, tok, engine.stop_ids(params), params.stop)
        if body.stream:
            return StreamingResponse(_stream(loop, request_id, queue, reply, metrics), media_type="text/event-stream")
        return await _collect(loop, request_id, queue, reply, request, limits, metrics)

    return app


class _KeyCheck:
    """The API key on /v1 routes, compared in constant time. Plain ASGI: Starlette's
    BaseHTTPMiddleware would pass every streamed chunk through an extra memory stream."""

    def __init__(self, app, expected: bytes):
        self.app, self.expected = app, expected

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = error_body("a valid API key is needed (Authorization: Bearer KEY)", "authentication_error",
                                  code="invalid_api_key")
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Reply:
    """One request's answer as it forms: per sample, its text by channel, and the OpenAI shapes."""

    def __init__(self, prefix: str, body, prompt_ids: list[int], tok, stop_ids, stops):
        self.id, self.created, self.body = f"{prefix}-{uuid.uuid4().hex}", int(time.time()), body
        self.created_perf = time.perf_counter()
        self.chat = prefix == "chatcmpl"
        self.prompt_ids, self.tok = prompt_ids, tok
        # chat: r1kit's prompt ends inside <think>, so the reasoning channel opens first
        self.texts = [TextStream(tok, prompt_ids if self.chat else [], stop_ids, stops) for _ in range(body.n)]
        self.reasoning = [""] * body.n
        self.answer = [""] * body.n
        self.logprobs: list[list[dict]] = [[] for _ in range(body.n)]
        self.finish: list[str | None] = [None] * body.n
        self.started = [False] * body.n

    def feed(self, event: TokenEvent) -> list[tuple[int, str, str]]:
        """(sample, channel, text) pieces this token makes visible; the whole text is kept too."""
        i = event.index
        pieces = []
        for delta in self.texts[i].feed(event.token_id, event.finish_reason):
            channel = delta.channel if self.chat else "answer"
            if delta.text:
                if channel == "reasoning":
                    self.reasoning[i] += delta.text
                else:
                    self.answer[i] += delta.text
                pieces.append((i, channel, delta.text))
        if self.chat and self.body.logprobs:
            self.logprobs[i].append({"token": self.tok.decode([event.token_id]), "logprob": event.logprob,
                                     "bytes": list(self.tok.decode([event.token_id]).encode()), "top_logprobs": []})
        if event.finish_reason is not None:
            self.finish[i] = event.finish_reason
        return pieces

    def usage(self, output: RequestOutput) -> dict:
        completion = sum(len(s.token_ids) for s in output.samples)
        usage = {"prompt_tokens": len(self.prompt_ids), "completion_tokens": completion,
                 "total_tokens": len(self.prompt_ids) + completion,
                 "prompt_tokens_details": {"cached_tokens": output.cached_tokens}}
        if self.chat:
            end = self.tok.end_think_id
            reasoning = sum(s.token_ids.index(end) if end in s.token_ids else len(s.token_ids) for s in output.samples)
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return usage

    def message(self, i: int) -> dict:
        message = {"role": "assistant", "content": self.answer[i]}
        if self.body.include_reasoning:
            message["reasoning_content"] = self.reasoning[i]
        return message

    def response(self, output: RequestOutput) -> dict:
        if self.chat:
            choices = [{"index": i, "message": self.message(i), "finish_reason": self.finish[i],
                        "logprobs": {"content": self.logprobs[i]} if self.body.logprobs else None}
                       for i in range(self.body.n)]
            kind = "chat.completion"
        else:
            choices = [{"index": i, "text": self.answer[i], "finish_reason": self.finish[i], "logprobs": None}
                       for i in range(self.body.n)]
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.body.model, "choices": choices,
                "usage": self.usage(output)}

    def chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        body = {"id": self.id, "object": kind, "created": self.created, "model": self.body.model, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def piece_choice(self, i: int, channel: str, text: str) -> dict:
        if not self.chat:
            return {"index": i, "text": text, "finish_reason": None, "logprobs": None}
        delta = {"reasoning_content": text} if channel == "reasoning" else {"content": text}
        if not self.started[i]:
            delta["role"] = "assistant"
            self.started[i] = True
        return {"index": i, "delta": delta, "finish_reason": None, "logprobs": None}

    def end_choice(self, i: int) -> dict:
        if not self.chat:
            return {"index": i, "text": "", "finish_reason": self.finish[i], "logprobs": None}
        return {"index": i, "delta": {}, "finish_reason": self.finish[i], "logprobs": None}


async def _collect(loop: EngineLoop, request_id: int, queue: asyncio.Queue, reply: _Reply, request: Request,
                   limits: Limits, metrics: ServerMetrics) -> JSONResponse:
    """A non-streamed response: wait for the whole output (aborting if the client leaves)."""
    first = True
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), timeout=limits.poll_disconnect_s)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                loop.abort(request_id)
                metrics.request_ended(None)
                return JSONResponse(error_body("the client went away", "invalid_request_error"), status_code=499)
            continue
        if isinstance(item, Finished):
            metrics.request_ended(item.output)
            if item.output is None:
                return JSONResponse(error_body(item.error, "service_unavailable"), status_code=503)
            return JSONResponse(reply.response(item.output))
        if first:
            metrics.first_token(reply.created_perf)
            first = False
        for event in item:
            reply.feed(event)


async def _stream(loop: EngineLoop, request_id: int, queue: asyncio.Queue, reply: _Reply, metrics: ServerMetrics):
    """Server-sent events: pieces as they come (reasoning before content), each sample's end, then
    usage (stream_options.include_usage) and [DONE]. A client that goes away aborts the request."""
    done = False
    try:
        first = True
        while True:
            items = [await queue.get()]
            # a handler that fell behind the engine sends what has piled up as one chunk per run of
            # text (vLLM's output collector merges the same way): fewer, larger deltas under load
            while not isinstance(items[-1], Finished) and not queue.empty():
                items.append(queue.get_nowait())
            if first and not isinstance(items[0], Finished):
                metrics.first_token(reply.created_perf)
                first = False
            runs: dict[int, list[list[str]]] = {}  # per sample, its [channel, text] runs in order
            for item in items:
                if isinstance(item, Finished):
                    break
                for event in item:
                    sample_runs = runs.setdefault(event.index, [])
                    for _, channel, text in reply.feed(event):
                        if sample_runs and sample_runs[-1][0] == channel:
                            sample_runs[-1][1] += text
                        else:
                            sample_runs.append([channel, text])
                    if event.finish_reason is not None:
                        sample_runs.append(["end", ""])
            for i, sample_runs in runs.items():
                for channel, text in sample_runs:
                    yield reply.chunk([reply.end_choice(i) if channel == "end" else reply.piece_choice(i, channel, text)])
            item = items[-1]
            if isinstance(item, Finished):
                done = True
                metrics.request_ended(item.output)
                if item.output is None:
                    yield f"data: {json.dumps(error_body(item.error, 'service_unavailable'))}\n\n"
                    return
                options = reply.body.stream_options
                if options is not None and options.include_usage:
                    yield reply.chunk([], usage=reply.usage(item.output))
                yield "data: [DONE]\n\n"
                return
    finally:
        if not done:  # the client went away (or the response was cancelled): free its KV blocks now
            loop.abort(request_id)
            metrics.request_ended(None)
