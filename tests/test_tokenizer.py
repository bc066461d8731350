import pytest

from r1kit.data.tokenizer import Tokenizer, TokenizerError, is_symbol_token
from r1kit.format import END_THINK, EOS, SPECIAL_TOKENS, format_prompt

CORPUS = [
    "Natalia sold 48 clips in April and half as many in May. How many clips did she sell?",
    "Weng earns 12 dollars an hour. She worked 50 minutes. How much did she earn?",
    "48 / 2 = 24\n48 + 24 = 72\n#### 72",
    "12 / 60 = 0.2\n0.2 * 50 = 10\n#### 10",
] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=300)


def test_digits_are_single_tokens_and_text_round_trips(tok):
    text = "Weng earns 1234 dollars, 0.25 of 4800 = 1200."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("1234" "025" "4800" "1200")


def test_special_tokens_are_single_ids(tok):
    for special in SPECIAL_TOKENS:
        assert len(tok.encode(special)) == 1
    assert tok.pad_id == 0 and tok.decode([tok.eos_id]) == EOS
    enc = tok.encode_example("How many?", "2 + 3 = 5", "5")
    assert enc.ids[enc.n_prompt - 2] == tok.think_id  # the prompt ends inside <think>, then a newline
    assert tok.decode(enc.ids[: enc.n_prompt]) == format_prompt("How many?")
    assert enc.ids == tok.encode(format_prompt("How many?") + tok.decode(enc.ids[enc.n_prompt :]))
    assert tok.end_think_id in enc.ids[enc.n_prompt :] and enc.ids[-1] == tok.eos_id
    assert tok.decode(enc.ids[enc.n_prompt :]) == f"2 + 3 = 5\n{END_THINK}\n#### 5{EOS}"


def test_symbol_flags_mark_maths_tokens_only(tok):
    flags = tok.symbol_flags()
    assert len(flags) == tok.vocab_size
    for i, flag in enumerate(flags):
        text = tok.decode([i])
        assert flag == (text.strip() != "" and set(text.strip()) <= set("0123456789+-*/×÷^=()[]{}.")), text
    assert all(flags[tok.encode(d)[0]] for d in "0123456789=")
    assert not flags[tok.encode("Natalia")[0]] and not any(flags[tok.encode(s)[0]] for s in SPECIAL_TOKENS)
    assert is_symbol_token(" = ") and not is_symbol_token(" ") and not is_symbol_token("x")


def test_save_and_load(tok, tmp_path):
    tok.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    text = format_prompt("Natalia sold 48 clips.")
    assert loaded.encode(text) == tok.encode(text) and loaded.symbol_flags() == tok.symbol_flags()
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.load(tmp_path / "nowhere")
