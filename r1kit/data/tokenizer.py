"""Tokenizer: byte-level BPE (the `tokenizers` library) over r1kit.format's special tokens, and the
per-token maths-symbol flags. Knows no model.

Every digit is its own token (numbers are spelled digit by digit, so arithmetic has a fixed
vocabulary); the rest is byte-level BPE trained on the corpus, so names and items of a small
corpus become single tokens.

The chat format (special tokens, prompt template, `format_prompt`, `format_completion`) is
r1kit.format's; this module encodes it.

Symbol flags: a token is a maths symbol when, without surrounding spaces, it is non-empty and
made only of digits, operators (+ - * / × ÷ ^), '=', brackets and the decimal point. A
sentence's full stop is the same token as a decimal point, so it is flagged too. The flags are
saved with the tokenizer and copied into the model (`Transformer.set_symbol_flags`).

Files (inside a checkpoint directory): `tokenizer.json` (the `tokenizers` file) and
`tokenizer_config.json` (special tokens, chat template, symbol flags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from r1kit.format import (
    ASSISTANT, BOS, CHAT_TEMPLATE, END_THINK, EOS, PAD, SPECIAL_TOKENS, THINK, USER, conversation_parts, format_completion,
)

SYMBOL_CHARS = set("0123456789+-*/×÷^=()[]{}.")
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# SFT's BPE size (SFTConfig.vocab_size): on toy maths ~500 makes names and items single tokens, 1024
# also common phrases (prompts 58 -> 44 tokens, 20% more SFT steps a minute, docs/benchmarks.md)
DEFAULT_VOCAB_SIZE = 1024


def is_symbol_token(text: str) -> bool:
    text = text.strip()
    return bool(text) and all(ch in SYMBOL_CHARS for ch in text)


class TokenizerError(ValueError):
    pass


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # the first n_prompt ids are the prompt; the rest is the response


class Tokenizer:
    """A thin wrapper over `tokenizers.Tokenizer` that knows r1kit's special tokens and format."""

    def __init__(self, backend):
        self.backend = backend
        missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks the special tokens {missing}")
        self.pad_id, self.bos_id, self.eos_id = (backend.token_to_id(t) for t in (PAD, BOS, EOS))
        self.think_id, self.end_think_id = backend.token_to_id(THINK), backend.token_to_id(END_THINK)
        # a second backend that reads special tokens' spellings as plain text, for what users write
        # (a copy, not a toggled flag: encoding stays safe from several threads)
        self._literal = type(backend).from_str(backend.to_str())
        self._literal.encode_special_tokens = True

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2) -> "Tokenizer":
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        backend.train_from_iterator(texts, trainer)
        return cls(backend)

    # ------------------------------------------------------------------ use

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special)

    def encode_literal(self, text: str) -> list[int]:
        """Text as text: '<|eos|>' written by a user is seven characters, not the stop token."""
        return self._literal.encode(text, add_special_tokens=False).ids

    def encode_conversation(self, messages, add_generation_prompt: bool = True) -> list[int]:
        """format_conversation's prompt as ids, the messages' contents encoded literally."""
        return [i for text, literal in conversation_parts(messages, add_generation_prompt)
                for i in (self.encode_literal(text) if literal else self.encode(text))]

    def encode_prompt(self, question: str) -> list[int]:
        """format_prompt's ids, the question encoded literally."""
        return self.encode_conversation([{"role": "user", "content": question}])

    def encode_example(self, question: str, reasoning: str, answer: str, history=()) -> Encoded:
        """A training example: the prompt (earlier turns of a dialogue first), then the completion."""
        prompt = self.encode_conversation([*history, {"role": "user", "content": question}])
        return Encoded(prompt + self.encode(format_completion(reasoning, answer)), len(prompt))

    def symbol_flags(self) -> list[bool]:
        """One flag per id: is this token a maths symbol (digits, operators, '=', brackets, '.')?"""
        flags = []
        for i in range(self.vocab_size):
            token = self.backend.id_to_token(i)
            special = token in SPECIAL_TOKENS
            flags.append(not special and is_symbol_token(self.backend.decode([i])))
        return flags

    # ------------------------------------------------------------------ files

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.backend.save(str(directory / TOKENIZER_FILE))
        config = {
            "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
            "additional_special_tokens": [USER, ASSISTANT, THINK, END_THINK],
            "chat_template": CHAT_TEMPLATE,
            "symbol_flags": self.symbol_flags(),
        }
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        from tokenizers import Tokenizer as Backend

        file = Path(directory) / TOKENIZER_FILE
        if not file.is_file():
            raise TokenizerError(f"no {TOKENIZER_FILE} in {directory}")
        return cls(Backend.from_file(str(file)))
