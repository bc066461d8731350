"""The OpenAI request shapes r1kit serves (chat completions, completions), validated with pydantic,
and the rules for fields it does not implement.

- A field OpenAI defines and r1kit does not implement (`tools`, `logit_bias`, `frequency_penalty`,
  `response_format`, ...) is refused with a 400 naming it, unless it holds its neutral value: a
  different answer than the client asked for is never given silently.
- A field nobody defines is ignored with a logged warning (vLLM's behaviour).
- Earlier assistant turns' `reasoning_content` sent back by a client is dropped: r1kit's chat
  template keeps an earlier answer's final part only (`format_conversation`), so the reasoning
  would be dropped anyway. (DeepSeek answers 400 instead; r1kit is lenient, as clients that echo
  whole messages back are common.)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI fields r1kit does not implement, each with the values that mean "not used"
UNSUPPORTED_NEUTRAL: dict[str, tuple] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "response_format": (None, {"type": "text"}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "web_search_options": (None,),
    "best_of": (None, 1),
    "echo": (None, False),
    "suffix": (None, ""),
    "service_tier": (None, "auto", "default"),
    "reasoning_effort": (None,),
}
# OpenAI fields that change nothing in r1kit's answer, accepted as they come
ACCEPTED_AND_IGNORED = {"user", "metadata", "store"}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None  # dropped (module docstring)
    name: str | None = None

    def text(self, index: int) -> str:
        """The message's text; a list of content parts may hold text parts only."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"messages[{index}].content: only text parts are supported, got type {part.get('type')!r}",
                                   param=f"messages[{index}].content")
            pieces.append(part["text"])
        return "".join(pieces)


class SamplingFields(BaseModel):
    """What chat completions and completions share."""

    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)  # vLLM's extra; -1 or 0: all tokens
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    cache_salt: str | None = Field(None, min_length=1)  # vLLM's extra: the prefix cache's tenant
    precision: Literal["exact", "fp32", "bf16", "fp16"] | None = None  # r1kit's: dynamic_inference per request


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    include_reasoning: bool = True  # vLLM's extra: False leaves reasoning_content out


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=5)


class RequestError(ValueError):
    """A request r1kit will not serve: an OpenAI-shaped error with this status."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.kind = message, param, code, status, kind


def unsupported_fields(request: BaseModel) -> list[str]:
    """Extra fields of `request` r1kit ignores (unknown to OpenAI too); raises RequestError for an
    OpenAI field r1kit does not implement that holds something other than its neutral value."""
    ignored = []
    for name, value in (request.model_extra or {}).items():
        if name in UNSUPPORTED_NEUTRAL:
            if value not in UNSUPPORTED_NEUTRAL[name]:
                raise RequestError(f"{name} is not supported by this server (only its neutral value is accepted)",
                                   param=name, code="unsupported_parameter")
        elif name not in ACCEPTED_AND_IGNORED:
            ignored.append(name)
    return ignored


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
