"""The chat and response format (docs/design.md S10): the one owner of r1kit's special tokens,
prompt template and response layout. `data` (tokenizer, training text), `reward` (the verifier
reads answers after `</think>`), the engine, the chat CLI and the HF export all use this module,
so data and reward need not import each other. Pure Python.

One turn, as the model sees it:

    <|bos|><|user|>{question}<|assistant|><think>
    {reasoning}
    </think>
    #### {answer}<|eos|>

The prompt ends with `<|assistant|><think>\\n` (as DeepSeek-R1's template does), so generation
starts inside the reasoning; the answer takes one fixed form, `#### N` (GSM8K's own marker).

Conversations (`format_conversation`), DeepSeek-R1's convention: an earlier assistant turn enters
the next prompt with its final part only, `<|assistant|>#### 48<|eos|>`; its reasoning (all up to
the last `</think>`) is dropped, as R1's chat template and API do, so a conversation's prompt grows
by answers, not by traces. Earlier questions stay whole. System messages may only open the
conversation; the model has no system role, so their text is put before the first question,
followed by a blank line (as templates of models without one do). `CHAT_TEMPLATE` renders the same
text in Jinja, for tools that read a tokenizer's chat template (a test checks they agree).
"""

from __future__ import annotations

from typing import Mapping, Sequence

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
THINK, END_THINK = "<think>", "</think>"
SPECIAL_TOKENS = [PAD, BOS, EOS, USER, ASSISTANT, THINK, END_THINK]  # PAD first: id 0
ANSWER_MARKER = "####"  # the fixed final-answer form: "#### 72" on its own line after </think>

CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'].strip() + '\\n\\n' %}"
    "{% elif m['role'] == 'user' %}<|user|>{{ ns.system + m['content'].strip() }}{% set ns.system = '' %}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'].split('</think>')[-1].strip() }}<|eos|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)


def format_answer(answer: object) -> str:
    """The final answer in r1kit's fixed form: ``#### 72``."""
    return f"{ANSWER_MARKER} {answer}"


def format_prompt(question: str) -> str:
    """A one-question prompt (a conversation of one user turn); generation continues inside the reasoning."""
    return format_conversation([{"role": "user", "content": question}])


def format_completion(reasoning: str, answer: object) -> str:
    """What the model writes after the prompt: reasoning, </think>, the final answer, EOS."""
    return f"{reasoning.strip()}\n{END_THINK}\n{format_answer(answer)}{EOS}"


def format_response(reasoning: str, answer: object) -> str:
    """A whole response as a verifier or another tool sees it, the opening tag included:
    ``<think>\\n...\\n</think>\\n#### 72``."""
    return f"{THINK}\n{reasoning.strip()}\n{END_THINK}\n{format_answer(answer)}"


def split_completion(completion: str) -> tuple[str, str | None]:
    """(reasoning, final part): the final part follows the last </think>; it is None when a
    <think> is never closed, and the whole completion when there are no tags."""
    close = completion.rfind(END_THINK)
    if close >= 0:
        return completion[:close], completion[close + len(END_THINK):]
    return (completion, None) if THINK in completion else ("", completion)


def format_conversation(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """A conversation as one prompt (the module docstring gives the convention): system text
    before the first question, user turns whole, earlier assistant turns by their final part only,
    then the prompt for the next assistant turn."""
    return "".join(text for text, _ in conversation_parts(messages, add_generation_prompt))


def conversation_parts(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> list[tuple[str, bool]]:
    """format_conversation's text in pieces, each (text, written by the caller): the template's own
    pieces hold the special tokens; the caller's (the messages' contents) are text even where they
    spell a special token, so a tokenizer encodes them literally (Tokenizer.encode_conversation)."""
    parts: list[tuple[str, bool]] = [(BOS, False)]
    system, opened = "", False
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be text, got {type(content).__name__}")
        if role == "system":
            if opened:
                raise ValueError(f"message {i}: a system message may only open the conversation")
            system += content.strip() + "\n\n"
        elif role == "user":
            parts += [(USER, False), (f"{system}{content.strip()}", True)]
            system, opened = "", True
        elif role == "assistant":
            parts += [(ASSISTANT, False), (content.split(END_THINK)[-1].strip(), True), (EOS, False)]
            opened = True
        else:
            raise ValueError(f"message {i}: unknown chat role {role!r}; allowed: system, user, assistant")
    if add_generation_prompt:
        parts.append((f"{ASSISTANT}{THINK}\n", False))
    return parts
