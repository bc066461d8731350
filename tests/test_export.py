"""Export to the Hugging Face Llama format: same logits and same greedy text under transformers."""


import pytest
import torch

from conftest import make_model
from r1kit.interop.checkpoint import save_pretrained
from r1kit.cli import main
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.interop.hf import ExportError, export_hf
from r1kit.data.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers", reason="transformers is needed to load the exported model")

CORPUS = ["Tom has 12 apples and buys 7 more. How many apples?", "12 + 7 = 19\n</think>\n#### 19"] * 20


def _checkpoint(tmp_path, **changes):
    tok = Tokenizer.train(CORPUS, vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=96, **changes).eval()
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    path = tmp_path / "ckpt"
    save_pretrained(model, path, extra=tok.save)
    return path, model, tok


def test_exported_dense_model_matches_in_transformers(tmp_path):
    path, model, tok = _checkpoint(tmp_path, attention=dict(kind="dense"), moe=dict(n_experts=0), n_kv_heads=2)
    assert main(["export-hf", str(path), str(tmp_path / "hf")]) == 0
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")

    question = "Tom has 12 apples and buys 7 more."
    prompt = tok.encode_prompt(question)
    chat = hf_tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    assert hf_tok(chat, add_special_tokens=False)["input_ids"] == prompt

    ids = torch.randint(0, tok.vocab_size, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=1e-4)

    ours = Engine(model, tok).generate([prompt], SamplingParams(max_new_tokens=30))[0].samples[0]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False, eos_token_id=tok.eos_id,
                             pad_token_id=tok.pad_id)[0, len(prompt):].tolist()
    assert ours.token_ids == theirs
    assert hf_tok.decode(theirs, skip_special_tokens=False) == tok.decode(ours.token_ids)


@pytest.mark.parametrize("changes, reason", [
    (dict(moe=dict(n_experts=0)), "attention.kind is 'multiscale'"),
    (dict(attention=dict(kind="dense")), "moe.n_experts is 4"),
])
def test_non_dense_models_are_refused_with_the_reason(tmp_path, changes, reason, capsys):
    path, _, _ = _checkpoint(tmp_path, **changes)
    with pytest.raises(ExportError, match=reason):
        export_hf(path, tmp_path / "hf")
    assert main(["export-hf", str(path), str(tmp_path / "hf")]) == 2
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_export_replaces_only_a_folder_it_wrote(tmp_path, capsys):
    path, _, _ = _checkpoint(tmp_path, attention=dict(kind="dense"), moe=dict(n_experts=0))
    out = tmp_path / "hf"
    assert main(["export-hf", str(path), str(out)]) == 0
    assert main(["export-hf", str(path), str(out)]) == 0  # its own earlier export: replaced
    assert main(["export-hf", str(path), str(path)]) == 2  # an r1kit checkpoint is not an export
    assert "refusing to write over" in capsys.readouterr().err
    assert (path / "tokenizer.json").is_file() and not (path / "generation_config.json").exists()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "keep.txt").write_text("x")
    assert main(["export-hf", str(path), str(runs)]) == 2
    assert [p.name for p in runs.iterdir()] == ["keep.txt"]
