"""r1kit.format: the one chat/response format, its conversation convention, and the Jinja
template that other tools render it with."""

import jinja2
import pytest

from r1kit.format import (
    CHAT_TEMPLATE, END_THINK, EOS, THINK, format_completion, format_conversation, format_prompt, format_response,
    split_completion,
)


def render(messages, add_generation_prompt=True):
    return jinja2.Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt, bos_token="<|bos|>")


def test_one_question_is_the_prompt_and_the_jinja_template_agrees():
    messages = [{"role": "user", "content": "  How many?\n"}]
    assert format_conversation(messages) == format_prompt("How many?") == render(messages)
    assert format_prompt("How many?").endswith(THINK + "\n")


def test_earlier_turns_keep_their_answer_and_drop_their_reasoning():
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Lily has 24 crayons. She buys 3 boxes of 8. How many?"},
        {"role": "assistant", "content": "3 * 8 = 24\n24 + 24 = 48\n</think>\n#### 48"},
        {"role": "user", "content": "Then she gives away 10. How many now?"},
    ]
    prompt = format_conversation(messages)
    assert prompt == render(messages)
    assert "24 + 24 = 48" not in prompt and "<|assistant|>#### 48<|eos|>" in prompt
    assert prompt.startswith("<|bos|><|user|>Answer briefly.\n\nLily has 24")
    assert prompt.endswith("<|user|>Then she gives away 10. How many now?<|assistant|><think>\n")
    # an assistant turn sent back without reasoning enters the prompt the same way
    without = messages[:2] + [{"role": "assistant", "content": "#### 48"}] + messages[3:]
    assert format_conversation(without) == prompt
    assert format_conversation(messages, add_generation_prompt=False) == render(messages, add_generation_prompt=False)


def test_bad_conversations_are_refused_with_the_message_named():
    with pytest.raises(ValueError, match="unknown chat role 'tool'"):
        format_conversation([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="message 1: a system message may only open"):
        format_conversation([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}])
    with pytest.raises(ValueError, match="message 0: content must be text"):
        format_conversation([{"role": "user", "content": None}])


def test_a_completion_splits_back_into_reasoning_and_answer():
    completion = format_completion(" 2 + 3 = 5 ", 5)
    assert completion == f"2 + 3 = 5\n{END_THINK}\n#### 5{EOS}"
    assert split_completion(format_response("2 + 3 = 5", 5)) == (f"{THINK}\n2 + 3 = 5\n", "\n#### 5")
    assert split_completion("<think>never closed") == ("<think>never closed", None)
    assert split_completion("#### 5") == ("", "#### 5")
