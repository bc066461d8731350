"""Verifiable maths data: the example schema, a GSM8K loader and JSONL reading/writing with clear
errors. Pure Python (no torch): the tokenizer and trainers come later
in the data flow and import this module, never the other way round.

Example schema (one JSON object per line; `Example.to_json` / `Example.from_json`)
    question       the problem in English; numbers written as digits, no thousands separators
    steps          the reasoning, one equation per step. Synthetic steps are exactly `a op b = c`
                   (op one of + - * /, single spaces, plain integers); GSM8K steps are its
                   calculator annotations written `expr = value` (the expression as GSM8K wrote it)
    answer         the final answer as a string of digits ("72"); for synthetic problems the last
                   step's result
    optimal_steps  the number of steps a minimal solution needs (synthetic: len(steps), every step's
                   result is used; GSM8K: the number of annotations, see `gsm8k_example`)
    meta           where the example came from: synthetic -> {"source": "synth", "template",
                   "n_steps", "max_operand", "facts"}; GSM8K -> {"source": "gsm8k", "solution",
                   "optimal_steps_from"}. A follow-up question of a dialogue carries the turns before
                   it in "history" ([{"role": "user", "content"}, {"role": "assistant", "content":
                   "#### 48"}, ...]); its steps may use those answers

Synthetic problems come from r1kit.data.synth (templates listed in docs/data.md).

Bad input
    `read_jsonl` / `load_examples` raise `DataError` naming the file and line of a malformed line
    (not JSON, not an object, missing or mistyped fields), or with skip_bad=True skip it and count
    it; blank lines are ignored. A file with no examples left raises `DataError`.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from r1kit.format import SPECIAL_TOKENS

MIN_STEPS, MAX_STEPS = 1, 6  # the step counts the generator can make
MIN_MAX_OPERAND = 10  # below this there is too little room to draw distinct counts >= 2


class DataError(ValueError):
    """Bad data: a malformed line (the message names file and line), an empty dataset."""


# ----------------------------------------------------------------------------------- the schema


@dataclass
class Example:
    question: str
    steps: list[str]
    answer: str
    optimal_steps: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> list[dict[str, str]]:
        """Earlier turns of a dialogue (meta["history"]: user questions and the assistant's answers,
        oldest first); [] for a one-question problem."""
        return self.meta.get("history", [])

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation the model answers: the earlier turns, then this question."""
        return [*self.history, {"role": "user", "content": self.question}]

    @property
    def context(self) -> str:
        """All the text a step may take its numbers from: earlier turns (their answers included) and the question."""
        return "\n".join(m["content"] for m in self.messages)

    def to_json(self) -> dict[str, Any]:
        """The JSONL row (a dict ready for json.dumps)."""
        return {
            "question": self.question,
            "steps": list(self.steps),
            "answer": self.answer,
            "optimal_steps": self.optimal_steps,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Example:
        """Validate a JSONL row of r1kit's schema; raises DataError saying which field is wrong."""
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}")
        missing = [k for k in ("question", "steps", "answer", "optimal_steps") if k not in row]
        if missing:
            raise DataError(f"missing field(s) {', '.join(missing)}")
        question, steps, answer, optimal = row["question"], row["steps"], row["answer"], row["optimal_steps"]
        if not isinstance(question, str) or not question.strip():
            raise DataError("'question' must be a non-empty string")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise DataError("'steps' must be a list of strings")
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"'answer' must be a non-empty string such as \"72\", got {answer!r}")
        if isinstance(optimal, bool) or not isinstance(optimal, int) or optimal < 1:
            # 0 would pass here and fail in the efficiency term, after a whole evaluation's generation
            raise DataError(f"'optimal_steps' must be a whole number >= 1 (a minimal solution's step count), got {optimal!r}")
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            raise DataError("'meta' must be an object")
        _check_history(meta.get("history", []))
        return cls(question, list(steps), answer.strip(), optimal, dict(meta))


def _check_history(history: Any) -> None:
    """meta["history"]: turns alternating user, assistant, from the user's, each {"role", "content": text}."""
    if not isinstance(history, list) or len(history) % 2:
        raise DataError("'meta.history' must be a list of user and assistant turns, in pairs")
    for i, turn in enumerate(history):
        role = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != role or not isinstance(turn.get("content"), str):
            raise DataError(f"'meta.history[{i}]' must be {{\"role\": \"{role}\", \"content\": text}}")


def question_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised question: lower case, whitespace runs folded, stripped."""
    normalised = " ".join(text.lower().split())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------- GSM8K

_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def gsm8k_example(row: dict[str, Any]) -> Example:
    """Map a GSM8K row {"question", "answer"} to an Example.

    steps: each calculator annotation <<expr=value>> written `expr = value` (the expression as GSM8K
    wrote it). answer: the text after the last '####', commas removed. optimal_steps: the number of
    annotations; for the rows with none (95 of the 7473 training rows, algebra written out in
    prose) the number of solution lines before '####' (GSM8K writes one step per line), at least 1,
    so an efficiency score never divides by zero. meta["optimal_steps_from"] says which."""
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}")
    question, solution = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise DataError("GSM8K row: 'question' must be a non-empty string")
    if not isinstance(solution, str) or "####" not in solution:
        raise DataError("GSM8K row: 'answer' must be a solution string ending '#### N'")
    reasoning, final = solution.rsplit("####", 1)
    answer = final.strip().replace(",", "")
    if not answer:
        raise DataError("GSM8K row: nothing after '####'")
    steps = []
    for annotation in _ANNOTATION.findall(reasoning):
        if "=" not in annotation:
            raise DataError(f"GSM8K row: annotation <<{annotation}>> has no '='")
        expr, value = annotation.rsplit("=", 1)
        steps.append(f"{expr.strip()} = {value.strip()}")
    if steps:
        optimal, source = len(steps), "annotations"
    else:
        optimal, source = max(1, sum(1 for line in reasoning.splitlines() if line.strip())), "lines"
    meta = {"source": "gsm8k", "solution": solution, "optimal_steps_from": source}
    return Example(question.strip(), steps, answer, optimal, meta)


def load_gsm8k(path: str | os.PathLike) -> list[Example]:
    """Every row of a GSM8K JSONL file as an Example; a bad row raises DataError (file:line)."""
    return _read(path, skip_bad=False, convert=gsm8k_example).items


# --------------------------------------------------------------------------- JSONL reading/writing


class Rows(NamedTuple):
    rows: list[dict[str, Any]]
    skipped: int  # malformed lines skipped (skip_bad=True); 0 otherwise


class Loaded(NamedTuple):
    examples: list[Example]
    skipped: int  # malformed lines skipped (skip_bad=True); 0 otherwise


class Kept(NamedTuple):
    examples: list[Example]
    dropped: int  # examples over the limit


class _Read(NamedTuple):
    items: list[Any]
    skipped: int


def _read(path: str | os.PathLike, skip_bad: bool, convert: Callable[[Any], Any]) -> _Read:
    path = Path(path)
    items, skipped = [], 0
    with open(path, "rb") as f:  # a missing file raises FileNotFoundError, naming it
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines (a trailing newline, spacing) are not rows
            try:
                try:  # decoded line by line, so one bad byte is one bad line, with its number
                    row = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise DataError("not UTF-8 text") from None
                except json.JSONDecodeError as e:
                    raise DataError(f"not valid JSON ({e.msg} at column {e.colno})") from None
                items.append(convert(row))
            except DataError as e:
                if not skip_bad:
                    raise DataError(f"{path}:{lineno}: {e}") from None
                skipped += 1
    if not items:
        why = f" ({skipped} malformed line(s) skipped)" if skipped else ""
        raise DataError(f"{path}: the dataset is empty: no rows{why}")
    return _Read(items, skipped)


def _json_object(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}")
    return row


def read_jsonl(path: str | os.PathLike, skip_bad: bool = False) -> Rows:
    """The JSON objects of a JSONL file, as Rows(rows, skipped).

    A line that is not a JSON object raises DataError "FILE:LINE: why", or with skip_bad=True is
    skipped and counted in `skipped`. Blank lines are ignored. No rows at all raises DataError."""
    items, skipped = _read(path, skip_bad, _json_object)
    return Rows(items, skipped)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's metrics JSONL; [] when the file is missing or still empty. A last line
    cut short by a crash is left out; an unreadable line elsewhere is an error naming it."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:  # a trainer starts its log empty
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                break  # the last line of a run killed mid-write: never finished, not damage
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        records.append(record)
    return records


def _any_example(row: Any) -> Example:
    row = _json_object(row)
    if "steps" in row:
        return _without_special_tokens(Example.from_json(row))
    if "question" in row and "answer" in row:
        return _without_special_tokens(gsm8k_example(row))
    raise DataError("row has neither r1kit's fields (question, steps, answer, optimal_steps) "
                    "nor GSM8K's (question, answer)")


def _without_special_tokens(example: Example) -> Example:
    """Training text that spells a control token (<|eos|>, </think>, ...) would teach the model to
    emit it mid-answer, or end a prompt early: such a row is refused (with its file:line)."""
    history = [turn["content"] for turn in example.history]
    for name, texts in (("question", [example.question]), ("history", history), ("steps", example.steps),
                        ("answer", [example.answer])):
        for token in SPECIAL_TOKENS:
            if any(token in text for text in texts):
                raise DataError(f"'{name}' contains the special token {token!r}, which only r1kit's format may write")
    return example


def load_examples(path: str | os.PathLike, skip_bad: bool = False) -> Loaded:
    """Examples from a JSONL file of r1kit's schema (a row with 'steps') or GSM8K's (question +
    answer with '#### N'), detected per row, as Loaded(examples, skipped). Errors as read_jsonl."""
    items, skipped = _read(path, skip_bad, _any_example)
    return Loaded(items, skipped)


def example_chars(example: Example) -> int:
    """The length in characters of the question, the steps (one per line) and the answer."""
    return len(example.question) + sum(len(s) + 1 for s in example.steps) + len(example.answer)


def drop_long(examples: Iterable[Example], limit: int, length_fn: Callable[[Example], int] = example_chars) -> Kept:
    """Kept(examples whose length_fn(example) <= limit, number dropped). length_fn defaults to
    `example_chars`; pass a token count once a tokenizer exists."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
    kept, dropped = [], 0
    for ex in examples:
        if length_fn(ex) <= limit:
            kept.append(ex)
        else:
            dropped += 1
    return Kept(kept, dropped)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary file beside `path`; on a clean exit it replaces `path` (os.replace), on an
    error it is removed: a reader never sees half a file, and a crash leaves the old one whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file atomically (atomic_file)."""
    with atomic_file(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document (indented) atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any] | Example]) -> int:
    """Write rows (dicts or Examples) one JSON object per line, atomically. Returns the row count."""
    count = 0
    with atomic_file(path) as f:
        for row in rows:
            f.write(json.dumps(row.to_json() if isinstance(row, Example) else row, ensure_ascii=False) + "\n")
            count += 1
    return count
