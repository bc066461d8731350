"""The complexity-gated fast path (issue 24, S5): the early-exit graph equals a naive forward of it,
SFT's exit loss trains it, the gate at threshold 1.0 is exactly today's engine and at 0.0 the
naive early-exit decode, KV made under one graph is never read by the other, the estimator is
calibrated on data whose probabilities are known, and `r1kit calibrate` writes what the engine loads."""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import make_model
from r1kit.calibrate import same_answer
from r1kit.cli import main
from r1kit.data.schema import load_examples, write_jsonl
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.inference.fast_path import (
    FAST_PATH_FILE, FastPath, accuracy_at_thresholds, fit_estimator, probe_features, reliability_table, suggest_threshold,
)
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.model.transformer import LayerSkip
from r1kit.train.sft import encode_examples, load_run_config, make_batch, train_sft, training_corpus

N_LAYERS = 3


def _model(seed=0):
    return make_model(seed=seed, n_layers=N_LAYERS, max_seq_len=64).eval()


def _prompts(n_tokens=(5, 9, 14, 7, 11), seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 64, (n,), generator=g).tolist() for n in n_tokens]


def _gate(model, exit_after=1, bias=0.0):
    """A fast path whose estimator is a constant sigmoid(bias): the gate's rule, not its fit, under test."""
    F_ = 2 * model.config.dim + 1
    return FastPath(exit_after, exit_after, [0.0] * F_, [1.0] * F_, [0.0] * F_, bias)


@torch.no_grad()
def _naive_greedy(model, prompt, n_new, skip=None):
    """Greedy tokens by re-running the whole sequence each step (no cache): the reference."""
    ids = list(prompt)
    out = []
    for _ in range(n_new):
        logits = model(torch.tensor([ids]), skip=skip)[0, -1]
        token = int(logits.argmax())
        out.append(token)
        ids.append(token)
    return out


# ---------------------------------------------------------------------------- the model


def test_forward_with_exit_gives_the_full_and_the_naive_early_exit_logits():
    model = _model()
    ids = torch.randint(1, 64, (2, 12))
    mask = torch.rand(2, 12) < 0.5
    with torch.no_grad():
        for k in range(1, N_LAYERS):
            full, early = model.forward_with_exit(ids, k, logits_at_BT=mask)
            torch.testing.assert_close(full, model(ids, logits_at_BT=mask))
            torch.testing.assert_close(early, model(ids, skip=LayerSkip.early_exit(k, N_LAYERS), logits_at_BT=mask))
            # the probe's stream is the one the exit's head reads
            torch.testing.assert_close(model.lm_head(model.norm(model.hidden_after(ids, k))),
                                       model(ids, skip=LayerSkip.early_exit(k, N_LAYERS)))
        torch.testing.assert_close(model.hidden_after(ids, 0), model.embed(ids))
        torch.testing.assert_close(model.lm_head(model.norm(model.hidden_after(ids, N_LAYERS))), model(ids))
    for bad in (0, N_LAYERS):
        with pytest.raises(ValueError, match="early exit runs 1 .. 2"):
            LayerSkip.early_exit(bad, N_LAYERS)
        with pytest.raises(ValueError, match="exit_after must lie in 1 .. 2"):
            model.forward_with_exit(ids, bad)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_path")
    write_jsonl(root / "train.jsonl", synth(64, seed=0, steps=1, max_operand=10, templates=["stickers", "temperature"]))
    return root


def _exit_loss(final, data) -> float:
    """Response-token cross-entropy of the exit after 1 block on the training problems."""
    model, tok = load_pretrained(final).eval(), Tokenizer.load(final)
    encoded, _ = encode_examples(tok, load_examples(str(data))[0], 256)
    inputs, targets, weights = make_batch(encoded, list(range(len(encoded))), tok.pad_id, 0.0)
    with torch.no_grad():
        _, exit_NV = model.forward_with_exit(inputs, 1, logits_at_BT=weights > 0)
    return float(F.cross_entropy(exit_NV, targets[weights > 0]))


def test_the_exit_loss_trains_the_early_exit(toy, tmp_path):
    losses = {}
    for name, exits in (("plain", "[]"), ("exit", "[1]")):
        model_cfg, cfg = load_run_config("configs/tiny.yaml", [
            f"sft.train_data={toy / 'train.jsonl'}", "sft.eval_data=null", f"sft.out_dir={tmp_path / name}",
            "sft.max_steps=60", f"sft.early_exit_layers={exits}"])
        losses[name] = _exit_loss(train_sft(model_cfg, cfg, progress=False), toy / "train.jsonl")
    # the plain model's first block was never asked to predict; trained, the exit predicts clearly better (0.62 against 0.88 when written)
    assert losses["exit"] < 0.8 * losses["plain"], losses
    with pytest.raises(ValueError, match=r"early_exit_layers \[2\]"):
        model_cfg, cfg = load_run_config("configs/tiny.yaml", [
            f"sft.train_data={toy / 'train.jsonl'}", "sft.eval_data=null", f"sft.out_dir={tmp_path / 'bad'}",
            "sft.early_exit_layers=[2]"])
        train_sft(model_cfg, cfg, progress=False)


# ---------------------------------------------------------------------------- the engine


PARAMS = [SamplingParams(max_new_tokens=9), SamplingParams(max_new_tokens=7, temperature=1.0, seed=4, n=2)]


def _tokens(outputs):
    return [[(s.token_ids, s.logprobs) for s in out.samples] for out in outputs]


@pytest.mark.parametrize("memory_reuse", [True, False])
def test_threshold_one_is_exactly_todays_engine(memory_reuse):
    prompts = _prompts()
    params = [PARAMS[i % 2] for i in range(len(prompts))]
    block = {"memory_reuse": memory_reuse}
    today = Engine(_model(), dynamic_inference=block).generate(prompts, params)
    # an estimator that would send everything to the fast path at any threshold below 1
    gated = Engine(_model(), dynamic_inference=block | {"complexity_threshold": 1.0}, fast_path=_gate(_model(), bias=20.0))
    outs = gated.generate(prompts, params)
    assert _tokens(outs) == _tokens(today)
    assert all(o.graph == "full" and o.fast_p is None for o in outs)


@pytest.mark.parametrize("memory_reuse", [True, False])
def test_threshold_zero_is_the_naive_early_exit_decode(memory_reuse):
    model, prompts = _model(), _prompts()
    engine = Engine(model, dynamic_inference={"memory_reuse": memory_reuse, "complexity_threshold": 0.0},
                    fast_path=_gate(model, exit_after=1, bias=-20.0))  # p ~ 2e-9, still > 0: the rule sends it fast
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=8))
    skip = LayerSkip.early_exit(1, N_LAYERS)
    for prompt, out in zip(prompts, outs):
        assert out.graph == "fast" and 0 < out.fast_p < 1e-5
        assert out.samples[0].token_ids == _naive_greedy(model, prompt, 8, skip)


def test_rows_of_different_depths_in_one_forward_equal_each_graph_alone():
    model = _model()
    ids = torch.randint(1, 64, (4, 10))
    depths = [N_LAYERS, 1, 2, 1]
    with torch.no_grad():
        together = model(ids, depth_B=depths)
        for row, depth in enumerate(depths):
            skip = None if depth == N_LAYERS else LayerSkip.early_exit(depth, N_LAYERS)
            torch.testing.assert_close(together[row], model(ids[row : row + 1], skip=skip)[0])
        torch.testing.assert_close(model(ids, depth_B=[N_LAYERS] * 4), model(ids))
        # the same depths decided mid-forward, after the first block (the gate's route_after)
        seen = []
        routed = model(ids, route_after=(1, lambda h_NTC, rows: seen.append((h_NTC.shape, rows)) or depths))
        torch.testing.assert_close(routed, together)
        assert seen == [((4, 10, model.config.dim), [0, 1, 2, 3])]
        with pytest.raises(ValueError, match="row 1 cannot stop after 0 blocks, 1 have run"):
            model(ids, route_after=(1, lambda h_NTC, rows: [3, 0, 3, 3]))
    with pytest.raises(ValueError, match="depth_B must give 1 .. 3 blocks for each of the 4 rows"):
        model(ids, depth_B=[0, 1, 2, 3])


@pytest.mark.parametrize("memory_reuse", [True, False])
def test_mixed_batch_one_forward_each_request_on_its_graph_and_no_kv_shared_across_graphs(memory_reuse):
    model, prompts = _model(), _prompts()
    engine = Engine(model, dynamic_inference={"block_size": 4, "memory_reuse": memory_reuse}, fast_path=_gate(model, exit_after=2))
    full_ref = [_naive_greedy(model, p, 6) for p in prompts]
    fast_ref = [_naive_greedy(model, p, 6, LayerSkip.early_exit(2, N_LAYERS)) for p in prompts]
    # the same prompts on both graphs, in one run; count the forwards and the rows each block sees
    graphs = ["full", "fast"] * len(prompts)
    forwards, rows_seen = [], {0: [], 2: []}
    hooks = [model.register_forward_pre_hook(lambda m, args: forwards.append(args[0].shape[0]))]
    hooks += [model.layers[i].register_forward_pre_hook(lambda m, args, i=i: rows_seen[i].append(args[0].shape[0]))
              for i in rows_seen]
    for i, prompt in enumerate(prompts + prompts):
        engine.add_request(prompt, SamplingParams(max_new_tokens=6, graph=graphs[i]))
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
    for hook in hooks:
        hook.remove()
    outs = [engine.pop_output(i) for i in range(2 * len(prompts))]
    for i, out in enumerate(outs):
        ref = full_ref if out.graph == "full" else fast_ref
        assert out.graph == graphs[i]
        assert out.samples[0].token_ids == ref[i % len(prompts)]
    # one prefill of all ten prompts, then one decode forward a step for both graphs' rows: block 0
    # sees every row, block 2 (past the exit) only the full graph's five
    assert forwards == [10] * steps and steps == 6
    assert rows_seen[0] == [10] * 6 and rows_seen[2] == [5] * 6
    # a prompt cached by the full graph is not a prefix hit for the fast one, and vice versa
    prompt = list(range(1, 30))
    first = engine.generate([prompt], SamplingParams(max_new_tokens=2, graph="full"))[0]
    again_full = engine.generate([prompt], SamplingParams(max_new_tokens=2, graph="full"))[0]
    on_fast = engine.generate([prompt], SamplingParams(max_new_tokens=2, graph="fast"))[0]
    assert first.cached_tokens == 0 and again_full.cached_tokens == (28 if memory_reuse else 0)
    assert on_fast.cached_tokens == 0 and on_fast.samples[0].token_ids == _naive_greedy(model, prompt, 2, LayerSkip.early_exit(2, N_LAYERS))


def test_the_gate_follows_the_estimate_and_the_threshold():
    model, prompts = _model(), _prompts()
    gate = _gate(model)
    features = probe_features(model, prompts, probe_layers=1)
    z = (features - features.mean(0)) / features.std(0)
    # an estimator on a real feature: some prompts above 0.5, some below
    gate.feature_mean_F, gate.feature_std_F = features.mean(0).tolist(), features.std(0).tolist()
    gate.weight_F = [0.0] * len(gate.weight_F)
    col = int(z.std(0).argmax())
    gate.weight_F[col] = 3.0
    expected = torch.sigmoid(3.0 * z[:, col])
    for threshold in (0.2, 0.5, 0.8):
        engine = Engine(model, dynamic_inference={"complexity_threshold": threshold}, fast_path=gate)
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=2))
        for out, p in zip(outs, expected.tolist()):
            assert out.fast_p == pytest.approx(p, abs=1e-6)
            assert out.graph == ("fast" if p > threshold else "full")
    assert 0 < sum(p > 0.5 for p in expected.tolist()) < len(prompts)
    # the estimate comes from the prefill itself: one forward a step, no probe forward; a prompt
    # prefilled on the full graph serves a later request's prefix, one that stopped at the exit does not
    engine = Engine(model, dynamic_inference={"complexity_threshold": 0.5, "block_size": 4}, fast_path=gate)
    forwards = []
    hook = model.register_forward_pre_hook(lambda m, args: forwards.append(args[0].shape))
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=3))
    hook.remove()
    assert len(forwards) == 3 and forwards[0] == (len(prompts), max(map(len, prompts)))
    skip = LayerSkip.early_exit(1, N_LAYERS)
    for prompt, out in zip(prompts, outs):
        assert out.samples[0].token_ids == _naive_greedy(model, prompt, 3, skip if out.graph == "fast" else None)
        again = engine.generate([prompt + [5]], SamplingParams(max_new_tokens=1))[0]
        assert again.cached_tokens == (len(prompt) // 4 * 4 if out.graph == "full" else 0)
    # the probe over right-padded prompts of mixed lengths equals each prompt's forward alone
    for i, prompt in enumerate(prompts):
        torch.testing.assert_close(probe_features(model, [prompt], probe_layers=1)[0], features[i])


def test_fast_without_a_calibrated_checkpoint_is_an_error():
    with pytest.raises(ValueError, match="graph='fast' needs a calibrated checkpoint"):
        Engine(_model()).add_request([1, 2, 3], SamplingParams(graph="fast"))
    with pytest.raises(ValueError, match="graph must be one of auto, full, fast"):
        SamplingParams(graph="quick").check()
    with pytest.raises(ValueError, match="exit_after=3 must lie in 1 .. 2"):
        Engine(_model(), fast_path=_gate(_model(), exit_after=3))
    bad = _gate(_model())
    bad.weight_F = bad.weight_F[:-1]
    with pytest.raises(ValueError, match="this model's features number 65"):
        Engine(_model(), fast_path=bad)


# ---------------------------------------------------------------------------- the estimator


def test_the_estimator_is_calibrated_where_the_truth_is_known():
    """Labels drawn with known probabilities from a logistic model of the features: the fitted
    estimator's held-out ECE is small, and among the problems it routes at t the agreement is >= t."""
    g = torch.Generator().manual_seed(0)
    N, F_ = 4000, 12
    x = torch.randn(N, F_, generator=g, dtype=torch.float64)
    true_p = torch.sigmoid(x[:, :3] @ torch.tensor([1.5, -1.0, 0.8], dtype=torch.float64) + 0.7)
    y = torch.rand(N, generator=g, dtype=torch.float64) < true_p
    fit, held = slice(0, 2400), slice(2400, N)
    fast = fit_estimator(x[fit], y[fit], exit_after=1, probe_layers=1)
    p = fast.probability(x[held])
    table, ece = reliability_table(p, y[held])
    assert ece <= 0.05, table
    assert sum(row["n"] for row in table) == N - 2400
    rows = accuracy_at_thresholds(p, y[held], torch.ones(N - 2400, dtype=torch.bool), y[held], [0.5, 0.7, 0.9])
    for row in rows:
        n = row["routed"]
        assert n > 50
        # agreement among routed requests is at least t, up to two standard errors
        assert row["agreement_routed"] >= row["threshold"] - 2 * math.sqrt(0.25 / n), row


def test_reliability_table_and_threshold_rules():
    p = torch.tensor([0.05, 0.15, 0.95, 0.95, 0.55])
    y = torch.tensor([False, False, True, False, True])
    table, ece = reliability_table(p, y)
    assert [r["n"] for r in table] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert ece == pytest.approx((0.05 + 0.15 + 0.45 + 2 * 0.45) / 5)
    full = torch.tensor([True, True, True, True, False])
    fast = torch.tensor([False, True, True, False, False])
    rows = accuracy_at_thresholds(p, y, full, fast, [0.0, 0.5, 0.9, 1.0])
    assert [r["routed"] for r in rows] == [5, 3, 2, 0]
    assert [r["loss"] for r in rows] == pytest.approx([0.4, 0.2, 0.2, 0.0])
    # paired standard error: per-problem losses [1, 0, 0, 1, 0] at t = 0, [0, 0, 0, 1, 0] at 0.5 and 0.9
    assert [r["loss_se"] for r in rows] == pytest.approx([math.sqrt(0.3 / 5), 0.2, 0.2, 0.0])
    assert suggest_threshold(rows, max_loss=0.4) == 0.5  # the most traffic within the loss by one standard error
    assert suggest_threshold(rows, max_loss=0.2) == 1.0  # 0.2 measured at 0.5, but not by a standard error: shut
    assert suggest_threshold(rows, max_loss=0.01) == 1.0  # none within it: shut
    assert same_answer("12", "12.0") and not same_answer("12", "13") and same_answer(None, None) and not same_answer("x", None)


def test_fast_path_saves_and_loads(tmp_path):
    gate = _gate(_model())
    gate.reliability, gate.ece, gate.suggested_threshold = [{"n": 3}], 0.02, 0.6
    gate.save(tmp_path)
    assert FastPath.load(tmp_path) == gate
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / FAST_PATH_FILE).stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file written with open()
    assert FastPath.load(tmp_path / "nowhere") is None
    # a calibration fitted on other features (an older r1kit's, which did not name them) is refused
    record = json.loads((tmp_path / FAST_PATH_FILE).read_text())
    del record["features"]
    (tmp_path / FAST_PATH_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="fitted on features None, this r1kit computes .*--overwrite"):
        Engine(_model(), fast_path=FastPath.load(tmp_path))
    (tmp_path / FAST_PATH_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a fast path r1kit wrote"):
        FastPath.load(tmp_path)


# ---------------------------------------------------------------------------- r1kit calibrate


def test_cli_calibrate_writes_the_fast_path_the_engine_loads(tmp_path, capsys):
    problems = synth(40, seed=0, steps=1, max_operand=20)
    tok = Tokenizer.train(training_corpus(problems), vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192, n_layers=N_LAYERS)
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    save_pretrained(model, tmp_path / "ckpt", extra=tok.save)
    write_jsonl(tmp_path / "held.jsonl", problems)
    assert main(["calibrate", str(tmp_path / "ckpt"), "--data", str(tmp_path / "held.jsonl"), "--n", "40",
                 "--max-new-tokens", "6"]) == 0
    log = capsys.readouterr().out
    assert "exit after 1 of 3 blocks" in log and "exit after 2 of 3 blocks" in log and "kept the exit after" in log
    record = json.loads((tmp_path / "ckpt" / FAST_PATH_FILE).read_text())
    assert record["report"]["fit"] == 24 and record["report"]["held_out"] == 16
    assert sum(row["n"] for row in record["reliability"]) == 16
    engine = Engine.from_checkpoint(tmp_path / "ckpt", dynamic_inference={"complexity_threshold": 0.0})
    assert engine.fast_path.exit_after == record["exit_after"]
    out = engine.generate(["Tom has 3 apples."], SamplingParams(max_new_tokens=3))[0]
    assert out.graph == "fast" and out.fast_p is not None
    before = (tmp_path / "ckpt" / FAST_PATH_FILE).read_bytes()
    assert main(["calibrate", str(tmp_path / "ckpt"), "--data", str(tmp_path / "held.jsonl"), "--n", "20"]) == 2
    assert "fast_path.json exists (an earlier calibration); pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "ckpt" / FAST_PATH_FILE).read_bytes() == before  # an earlier calibration is kept unless asked
    assert main(["calibrate", str(tmp_path / "ckpt"), "--data", str(tmp_path / "held.jsonl"), "--exits", "3", "--overwrite"]) == 2
    assert "exits [3]: an early exit runs 1 .. 2 of the model's 3 blocks" in capsys.readouterr().err


def test_swapping_the_fast_path_mid_run_keeps_each_requests_exit():
    model, prompt = _model(), list(range(1, 30))
    engine = Engine(model, dynamic_inference={"block_size": 4}, fast_path=FastPath.ungated(1))
    fast = SamplingParams(max_new_tokens=6, graph="fast")
    assert engine.generate([prompt], SamplingParams(max_new_tokens=6))[0].graph == "full"  # ungated: auto stays full
    on_exit1 = engine.generate([prompt], fast)[0]
    assert on_exit1.samples[0].token_ids == _naive_greedy(model, prompt, 6, LayerSkip.early_exit(1, N_LAYERS))
    # a request routed to exit 1 keeps it when exit 2 replaces it mid-run, and the prompt it cached
    # under exit 1 is no prefix hit for exit 2
    running = engine.add_request(prompt, fast)
    engine.step()
    engine.fast_path = FastPath.ungated(2)
    later = engine.add_request(prompt, fast)
    while engine.has_unfinished():
        engine.step()
    assert engine.pop_output(running).samples[0].token_ids == on_exit1.samples[0].token_ids
    on_exit2 = engine.pop_output(later)
    assert on_exit2.cached_tokens == 0
    assert on_exit2.samples[0].token_ids == _naive_greedy(model, prompt, 6, LayerSkip.early_exit(2, N_LAYERS))
    # requests waiting for the gate when it goes run on the full graph
    gated = Engine(model, dynamic_inference={"complexity_threshold": 0.0}, fast_path=_gate(model))
    waiting = gated.add_request(prompt, SamplingParams(max_new_tokens=6))
    gated.fast_path = None
    while gated.has_unfinished():
        gated.step()
    out = gated.pop_output(waiting)
    assert out.graph == "full" and out.samples[0].token_ids == _naive_greedy(model, prompt, 6)


def test_an_unset_threshold_is_the_calibrated_one_and_metrics_count_graphs():
    from r1kit.inference.requests import RequestOutput
    from r1kit.serve.metrics import ServerMetrics

    model = _model()
    gate = _gate(model, bias=0.0)  # p = 0.5 for every prompt
    gate.suggested_threshold = 0.4
    assert Engine(model, fast_path=gate).complexity_threshold == 0.4
    assert Engine(model, fast_path=gate).generate([[1, 2, 3]], SamplingParams(max_new_tokens=1))[0].graph == "fast"
    assert Engine(model, dynamic_inference={"complexity_threshold": 0.6}, fast_path=gate).complexity_threshold == 0.6
    gate.suggested_threshold = None
    assert Engine(model, fast_path=gate).complexity_threshold == 0.7  # the article's
    metrics = ServerMetrics(Engine(model))
    for graph in ("fast", "full", "fast"):
        metrics.request_ended(RequestOutput(0, [1], [], graph=graph))
    text = metrics.render().decode()
    assert 'r1kit:requests_by_graph_total{graph="fast"} 2.0' in text and 'r1kit:requests_by_graph_total{graph="full"} 1.0' in text
