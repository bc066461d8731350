"""GRPO: the loss pieces by hand, routing replay, rewards of garbage, real learning on a toy reward,
every parameter trained, non-finite steps skipped, exact resume."""

import functools
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import make_model
from r1kit.train import grpo
from r1kit.train.optim import adamw
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.data.schema import load_examples, write_jsonl
from r1kit.train.averaging import interpolate_from, parameters_of
from r1kit.train.grpo import (
    MicroBatch, RLConfig, completion_rewards, completion_segments, load_rl_config, make_micro_batches, policy_update,
    train_rl,
)
from r1kit.train.grpo_loss import (
    clipped_surrogate, group_advantages, k3_kl, process_advantages, routing_mismatch, token_logprobs,
)
from r1kit.train.sft import reasoning_text, training_corpus
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer
from r1kit.format import format_completion, format_response
from r1kit.data.schema import Example
from r1kit.reward import RewardConfig, composite_reward, count_steps, score

RL_TINY = str(Path(__file__).resolve().parents[1] / "configs" / "rl_tiny.yaml")
TIMING_KEYS = {"rollout_tokens_per_s", "update_tokens_per_s", "train_minutes"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy problems and an init checkpoint: the tiny model (random weights) with a BPE trained on
    the problems, saved as an SFT run would save it."""
    root = tmp_path_factory.mktemp("rl")
    write_jsonl(root / "train.jsonl", synth(32, seed=0, steps=1, max_operand=10, templates=["stickers", "temperature"]))
    write_jsonl(root / "test.jsonl", synth(4, seed=1, steps=1, max_operand=10, templates=["stickers"]))
    examples = load_examples(root / "train.jsonl").examples
    tok = Tokenizer.train(training_corpus(examples), vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192)
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    save_pretrained(model, root / "init", extra=tok.save)
    return root


def _cfg(toy, out, *overrides) -> RLConfig:
    return load_rl_config(RL_TINY, [f"rl.train_data={toy / 'train.jsonl'}", "rl.eval_data=null", f"rl.out_dir={out}", *overrides])


def _records(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "reward" in r]


# ----------------------------------------------------------------------------- the loss, by hand


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]], dtype=torch.float64)
    # group 0: mean 0.25, centred (0.75, -0.25, -0.25, -0.25); unbiased variance 0.75 / 3, std 0.5
    std = group_advantages(rewards, "group_std")
    torch.testing.assert_close(std[0], torch.tensor([1.5, -0.5, -0.5, -0.5], dtype=torch.float64) * 0.5 / (0.5 + 1e-4))
    mean_only = group_advantages(rewards, "mean_only")
    torch.testing.assert_close(mean_only[0], torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64))
    # group 1 is all equal: exactly 0 either way (0.1 * 4 / 4 != 0.1 in floats, so this needs care)
    assert std[1].tolist() == [0.0] * 4 and mean_only[1].tolist() == [0.0] * 4
    one = group_advantages(torch.tensor([[0.7]]), "group_std")  # a group of one: std is NaN, advantage 0
    assert one.tolist() == [[0.0]]
    with pytest.raises(ValueError, match="advantage"):
        group_advantages(rewards, "whitened")


def test_clipped_surrogate_worked_example():
    eps = 0.2
    ratios = torch.tensor([[1.5, 0.9, 1.1], [0.5, 1.5, 10.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the last token (ratio 10) is padding
    advantages = torch.tensor([1.0, -2.0])
    logp_old = torch.zeros(2, 3)
    logp_new = ratios.log().requires_grad_()
    loss, clip_fraction = clipped_surrogate(logp_new, logp_old, advantages, mask, eps)
    # row 0, A = +1: min(r A, clip(r) A) = 1.2 (1.5 clipped to 1.2), 0.9, 1.1
    # row 1, A = -2: r = 0.5 -> min(-1.0, 0.8 * -2 = -1.6) = -1.6 (clipped); r = 1.5 -> min(-3.0, -2.4) = -3.0
    # objective sum = 1.2 + 0.9 + 1.1 - 1.6 - 3.0 = -1.4 over 5 tokens; loss = 1.4 / 5
    assert loss.item() == pytest.approx(0.28)
    assert clip_fraction == pytest.approx(2 / 5)
    loss.backward()
    # clipped tokens pass no gradient; the others d(-r A / 5)/dlogp = -r A / 5; padding none
    expected = torch.tensor([[0.0, -0.9 / 5, -1.1 / 5], [0.0, 1.5 * 2 / 5, 0.0]])
    torch.testing.assert_close(logp_new.grad, expected)
    # token-level normalisation over a larger batch: the same sum over 10 tokens
    half, _ = clipped_surrogate(ratios.log(), logp_old, advantages, mask, eps, n_tokens=10)
    assert half.item() == pytest.approx(0.14)
    # on-policy (ratio 1): the loss is -mean advantage over tokens, nothing clipped
    on_policy, clipped = clipped_surrogate(logp_old, logp_old, advantages, mask, eps)
    assert on_policy.item() == pytest.approx(-(3 * 1.0 + 2 * -2.0) / 5) and clipped == 0


def test_k3_kl_by_hand():
    new, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # ref - new = -ln 2: exp(-ln 2) + ln 2 - 1 = 0.5 + 0.6931 - 1
    assert k3_kl(new, ref).item() == pytest.approx(0.5 + math.log(2) - 1)
    x = torch.randn(100)
    assert k3_kl(x, x).abs().max() == 0
    # unbiased: over tokens drawn from the policy, its mean is KL(policy || reference)
    g = torch.Generator().manual_seed(0)
    logp_new, logp_ref = torch.randn(8, generator=g).log_softmax(-1), torch.randn(8, generator=g).log_softmax(-1)
    tokens = torch.multinomial(logp_new.exp(), 200_000, replacement=True, generator=g)
    exact = (logp_new.exp() * (logp_new - logp_ref)).sum()
    assert k3_kl(logp_new[tokens], logp_ref[tokens]).mean().item() == pytest.approx(exact.item(), rel=0.02)


def test_token_logprobs_match_cross_entropy():
    model = make_model().train()
    ids = torch.randint(0, 64, (2, 10))
    logp, entropy = token_logprobs(model, ids)
    ce = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    torch.testing.assert_close(logp, -ce.view(2, 9), atol=1e-5, rtol=1e-5)
    assert logp.shape == entropy.shape == (2, 9) and (entropy > 0).all() and (entropy <= math.log(64) + 1e-4).all()


# ----------------------------------------------------------------------------- routing replay


def test_replaying_the_models_own_routing_gives_identical_logits():
    model = make_model().train()
    ids = torch.randint(0, 64, (3, 20))
    logits = model(ids)
    recorded = model.last_routing()
    assert len(recorded) == 2 and recorded[0].shape == (3 * 20, 2)
    with model.replay_routing(recorded):
        replayed = model(ids)
    assert torch.equal(replayed, logits)
    assert all(m.replay_topk_NK is None for m in model.moe_layers())  # cleared on exit


def test_replaying_other_experts_changes_the_output_but_the_router_still_learns():
    model = make_model().train()
    ids = torch.randint(0, 64, (2, 16))
    logits = model(ids)
    own = model.last_routing()
    other = [(t + 1) % 4 for t in own]  # every token to different experts
    with model.replay_routing(other):
        replayed = model(ids)
        assert all(torch.equal(a, b) for a, b in zip(model.last_routing(), own))  # the router's own choice is still reported
    assert (replayed - logits).abs().max() > 1e-3
    replayed.square().mean().backward()
    assert all(m.expert_embed_EC.grad.abs().sum() > 0 for m in model.moe_layers())
    with pytest.raises(ValueError, match="expert ids"):
        with model.replay_routing(own):
            model(ids[:, :5])
    with pytest.raises(ValueError, match="2 MoE layers"):
        with model.replay_routing(own[:1]):
            pass


def test_routing_mismatch_by_hand():
    own = [torch.tensor([[0, 1], [2, 3], [0, 1]])]
    recorded = [torch.tensor([[1, 0], [2, 0], [3, 2]])]
    # token 0: the same set in another order -> 0 of 2 differ; token 1: expert 0 is not in {2, 3} -> 1 of 2;
    # token 2 is a prompt token (mask 0) and does not count
    assert routing_mismatch(own, recorded, torch.tensor([[1.0, 1.0, 0.0]])) == pytest.approx(1 / 4)


# ----------------------------------------------------------------------------- rewards


def test_garbage_and_empty_completions_score_zero(toy):
    tok = Tokenizer.load(toy / "init")
    ex = load_examples(toy / "train.jsonl").examples[0]
    correct = tok.encode(format_completion(reasoning_text(ex), ex.answer))
    assert correct[-1] == tok.eos_id
    completions = [[tok.eos_id], [], tok.encode("?? zz no steps, no answer"), torch.randint(7, 160, (30,)).tolist(), correct]
    cfg = RLConfig(train_data="x")
    rewards, parts = completion_rewards(tok, completions, [ex] * 5, cfg)
    assert rewards[:4] == [0.0] * 4
    # the gold solution: accuracy 1, every step valid, the optimal number of steps (article efficiency 0)
    assert rewards[4] == pytest.approx(0.9) and parts["accuracy"][4] == 1.0
    # the article's R as written: an empty completion earns efficiency 1 (no step) -> 0.1, the trap
    trap, _ = completion_rewards(tok, completions[:1], [ex], cfg.model_copy(update={"efficiency_only_if_correct": False}))
    assert trap == [pytest.approx(0.1)]


def test_extra_reward_functions_add_and_are_checked(toy):
    tok = Tokenizer.load(toy / "init")
    ex = load_examples(toy / "train.jsonl").examples[0]
    cfg = RLConfig(train_data="x")
    seen = {}

    def extra(texts, **columns):  # TRL's signature: the dataset's columns by name
        seen.update(columns)
        return [0.5, 2]

    rewards, parts = completion_rewards(tok, [[tok.eos_id], [tok.eos_id]], [ex] * 2, cfg, [extra])
    assert rewards == [0.5, 2.0] and parts["extra"] == [0.5, 2.0]
    assert seen == {"answer": [ex.answer] * 2, "question": [ex.question] * 2, "optimal_steps": [ex.optimal_steps] * 2}
    with pytest.raises(ValueError, match="finite"):
        completion_rewards(tok, [[tok.eos_id]], [ex], cfg, [lambda texts, **columns: [float("nan")]])
    with pytest.raises(ValueError, match="1 finite numbers"):
        completion_rewards(tok, [[tok.eos_id]], [ex], cfg, [lambda texts, **columns: [1.0, 2.0]])
    # r1kit.reward's TRL functions plug in as they are: the composite reward of a right answer
    right = tok.encode(format_completion(reasoning_text(ex), ex.answer))
    both, parts = completion_rewards(tok, [right], [ex], cfg, [functools.partial(composite_reward, config=RewardConfig())])
    assert parts["extra"][0] == pytest.approx(score(format_response(reasoning_text(ex), ex.answer), ex.answer,
                                                    ex.question, ex.optimal_steps).total)


# ----------------------------------------------------------------------------- process credit


def test_process_segments_reward_each_reasoning_line_and_the_answer(toy):
    tok = Tokenizer.load(toy / "init")
    ex = synth(1, seed=3, steps=2, max_operand=10)[0]
    cfg = RLConfig(train_data="x")  # weights 0.6 / 0.3 / 0.1, article efficiency (0 at the optimal count)
    reasoning = reasoning_text(ex)

    def segments(ids):  # as train_rl calls it: with the completion's reward and step validity
        rewards, parts = completion_rewards(tok, [ids], [ex], cfg)
        return completion_segments(tok, ids, ex, cfg, rewards[0], parts["step_validity"][0])

    gold = tok.encode(format_completion(reasoning, ex.answer))
    ends, rewards = segments(gold)
    assert rewards == pytest.approx([0.3, 0.3, 0.6]) and ends[-1] == len(gold) - 1
    # each line's segment ends on the token that completes the line, not before it
    first_line = reasoning.split("\n")[0]
    assert tok.decode(gold[: ends[0] + 1]).rstrip("\n").endswith(first_line)
    assert first_line not in tok.decode(gold[: ends[0]])
    # a wrong result on the first line: that line scores 0, the right final answer still scores
    expression, result = first_line.rsplit(" = ", 1)
    wrong = tok.encode(format_completion(reasoning.replace(first_line, f"{expression} = {int(result) + 1}", 1), ex.answer))
    _, wrong_rewards = segments(wrong)
    assert wrong_rewards[0] == 0.0 and wrong_rewards[-1] == pytest.approx(0.6)
    # garbage: one segment, the answer's, worth 0
    assert segments(tok.encode("?? no steps"))[1] == [0.0]


def test_process_credit_reads_each_claim_with_the_prose_before_it(toy):
    """Real solutions ground claims on prose lines before them ("Hannah = (1/2) 18 = 9", "2x + 4 =
    120"): a line is credited by the verifier's check of its claims in the whole reasoning, as the
    completion's step validity counts them, not of the line alone."""
    tok = Tokenizer.load(toy / "init")
    cfg = RLConfig(train_data="x", question_coverage=False)
    fixture = Path(__file__).resolve().parent / "fixtures" / "gsm8k_sample.jsonl"
    rows = [json.loads(line) for line in fixture.read_text().splitlines()]
    checked = 0
    for row in rows:
        if row["kind"] not in ("prose result", "equation"):
            continue
        reasoning, answer = (part.strip() for part in row["answer"].rsplit("####", 1))
        ex = Example(question=row["question"], answer=answer, steps=[], optimal_steps=count_steps(row["answer"]))
        ids = tok.encode(format_completion(reasoning, answer))
        rewards, parts = completion_rewards(tok, [ids], [ex], cfg)
        ends, segments = completion_segments(tok, ids, ex, cfg, rewards[0], parts["step_validity"][0])
        assert parts["step_validity"][0] == pytest.approx(1.0), row["answer"]  # every gold claim valid
        assert segments[:-1] == pytest.approx([cfg.step_validity_weight] * (len(segments) - 1)), row["answer"]
        checked += 1
    assert checked == 16


def test_question_coverage_makes_steps_that_ignore_the_question_pay_less(toy):
    tok = Tokenizer.load(toy / "init")
    ex = synth(1, seed=3, steps=2, max_operand=10)[0]  # 7 passengers, 6 get off, 3 get on: 7 - 6 = 1, 1 + 3 = 4
    plain, covered = RLConfig(train_data="x", question_coverage=False), RLConfig(train_data="x")  # on by default
    gold = tok.encode(format_completion(reasoning_text(ex), ex.answer))
    # two valid steps on the constant 2 that use only 7 of the question's 7, 6 and 3; wrong answer
    chain = tok.encode(format_completion("7 * 2 = 14\n14 + 2 = 16", 16))
    rewards = {}
    for name, cfg in (("plain", plain), ("covered", covered)):
        totals, parts = completion_rewards(tok, [gold, chain], [ex, ex], cfg)
        rewards[name] = totals
        if name == "covered":  # process credit pays each valid line the same share
            _, lines = completion_segments(tok, chain, ex, cfg, totals[1], parts["step_validity"][1], parts["coverage"][1])
            assert lines == pytest.approx([0.1, 0.1, 0.0])
    assert rewards["plain"] == pytest.approx([0.9, 0.3])  # 2 valid of 2 optimal steps
    assert rewards["covered"] == pytest.approx([0.9, 0.1])  # coverage 1/3


def test_process_advantages_by_hand():
    # group of two: A has lines ending at tokens 1 and 3 with rewards 0 and 0.6; B one segment worth 0.3.
    # All rewards (0, 0.6, 0.3): mean 0.3, unbiased std 0.3, so normalised A: (-1, +1), B: (0).
    # Token t sums the normalised rewards of segments ending at or after t.
    adv = process_advantages([([1, 3], [0.0, 0.6]), ([2], [0.3])], lengths=[4, 3], group_size=2)
    k = 0.3 / (0.3 + 1e-4)
    torch.testing.assert_close(adv[0], torch.tensor([0.0, 0.0, k, k]))
    torch.testing.assert_close(adv[1], torch.zeros(3))
    equal = process_advantages([([0, 1], [0.3, 0.3]), ([1], [0.3])], lengths=[2, 2], group_size=2)
    assert all(torch.equal(a, torch.zeros(2)) for a in equal)


def test_per_token_advantages_reach_the_right_positions_and_match_per_row_ones():
    prompts, completions = [[1, 2, 3], [1, 2]], [[4, 5], [6, 7, 8]]
    per_token = [torch.tensor([0.5, -1.0]), torch.tensor([2.0, 3.0, 4.0])]
    (mb,) = make_micro_batches(prompts, completions, per_token, pad_id=0, size=8)
    # rows sorted by length: (1, 2, 3, 4, 5) and (1, 2, 6, 7, 8) tie at 5, so the order is kept
    assert mb.advantages_B[mb.mask_BT == 1].tolist() == [0.5, -1.0, 2.0, 3.0, 4.0]
    assert mb.advantages_B[mb.mask_BT == 0].abs().sum() == 0
    # a per-token advantage that is constant along each row is the per-row loss exactly
    logp_new, logp_old = torch.randn(2, 4), torch.randn(2, 4)
    mask = torch.ones(2, 4)
    rows = torch.tensor([0.7, -1.3])
    by_row, _ = clipped_surrogate(logp_new, logp_old, rows, mask, 0.2)
    by_token, _ = clipped_surrogate(logp_new, logp_old, rows[:, None].expand(2, 4), mask, 0.2)
    torch.testing.assert_close(by_row, by_token)


def test_process_credit_trains(toy, tmp_path):
    cfg = _cfg(toy, tmp_path / "run", "rl.max_steps=2", "rl.prompts_per_step=4", "rl.credit=process")
    final = train_rl(cfg, toy / "init", progress=False, reward_fns=[_distinct_chars])
    records = _records(tmp_path / "run")
    assert len(records) == 2 and all(r["skipped"] == 0 and math.isfinite(r["loss"]) for r in records)
    changed = [not torch.equal(a, b) for a, b in zip(load_pretrained(toy / "init").parameters(), load_pretrained(final).parameters())]
    assert all(changed)


# ----------------------------------------------------------------------------- training


def _distinct_chars(texts, **columns):
    """A reward that differs within nearly every group of random completions."""
    return [len(set(t)) / 10 for t in texts]


def test_one_step_trains_every_parameter_and_logs_the_metrics(toy, tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(grpo, "load_pretrained", lambda path: loads.append(path) or load_pretrained(path))
    cfg = _cfg(toy, tmp_path / "run", "rl.max_steps=1", "rl.ppo_epochs=1", "rl.prompts_per_step=4",
               f"rl.eval_data={toy / 'test.jsonl'}")
    final = train_rl(cfg, toy / "init", progress=False, reward_fns=[_distinct_chars])
    assert len(loads) == 1  # beta = 0: no reference model is built

    before, after = load_pretrained(toy / "init"), load_pretrained(final)
    # precondition: the prompts reach every expert of every layer (a random router spreads 4 x ~40 tokens),
    # so every expert's slice of the stacked weights receives gradient
    tok = Tokenizer.load(final)
    prompts = [tok.encode_prompt(ex.question) for ex in load_examples(toy / "train.jsonl").examples[:4]]
    with torch.no_grad():
        before.train()(torch.tensor([p[:20] for p in prompts]))
    assert all(min(r["tokens_per_expert"]) > 0 for r in before.routing_stats())
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"
        if p0.dim() == 3:  # stacked experts: every expert's slice
            assert (p0 - p1).flatten(1).abs().sum(1).gt(0).all(), f"an expert of {name} did not change"

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and "eval_accuracy" in lines[1] and lines[1]["step"] == 0  # baseline
    record = lines[2]
    for key in ("reward", "reward_std", "accuracy", "step_validity", "efficiency", "reward_extra", "response_tokens",
                "loss", "clip_fraction", "entropy", "routing_mismatch", "grad_norm", "skipped", "all_equal_groups",
                "rollout_tokens_per_s", "update_tokens_per_s", "utilisation"):
        assert key in record, key
    assert "kl" not in record and record["skipped"] == 0
    assert record["clip_fraction"] == 0 and record["routing_mismatch"] == 0  # one on-policy pass: ratio 1, same routing
    assert "eval_accuracy" in lines[-1] and (final / "tokenizer.json").is_file()


def test_toy_reward_raises_the_favoured_tokens_probability(toy, tmp_path):
    """Reward = share of the completion's tokens that are '7' (the verifier's weights set to 0). The
    random init model gives '7' ~1/263 at the first response position (mean over the training
    prompts); 6 steps of 32 rollouts must raise it at least 3x (seed 0 measured ~58x), and the
    reward must rise."""
    tok = Tokenizer.load(toy / "init")
    seven = tok.encode("7")
    assert len(seven) == 1
    X = seven[0]

    def share_of_sevens(texts, **columns):
        return [sum(t == X for t in ids) / max(1, len(ids)) for ids in map(tok.encode, texts)]

    prompts = [tok.encode_prompt(ex.question) for ex in load_examples(toy / "train.jsonl").examples]

    def p_first(model) -> float:
        model.eval()
        with torch.no_grad():
            return sum(model(torch.tensor([p]))[0, -1].softmax(-1)[X].item() for p in prompts) / len(prompts)

    cfg = _cfg(toy, tmp_path / "run", "rl.max_steps=6", "rl.prompts_per_step=4", "rl.group_size=8", "rl.max_new_tokens=16",
               "rl.micro_batch_size=32", "rl.ppo_epochs=1", "rl.lr=3e-2",
               "rl.accuracy_weight=0", "rl.step_validity_weight=0", "rl.efficiency_weight=0")
    final = train_rl(cfg, toy / "init", progress=False, reward_fns=[share_of_sevens])
    p0, p1 = p_first(load_pretrained(toy / "init")), p_first(load_pretrained(final))
    rewards = [r["reward"] for r in _records(tmp_path / "run")]
    assert p1 > 3 * p0, (p0, p1, rewards)
    assert sum(rewards[-2:]) > sum(rewards[:2]), rewards


def test_dynamic_sampling_trains_only_groups_whose_rewards_differ(toy, tmp_path, monkeypatch):
    """A reward that is constant on temperature questions and varies on the others: with
    dynamic_sampling the update sees only varying groups, P of them, drawn over extra rounds; a
    reward constant everywhere falls back to the first round's groups (zero advantage)."""
    seen = []
    monkeypatch.setattr(grpo, "group_advantages", lambda r, mode: seen.append(r.clone()) or group_advantages(r, mode))

    def constant_on_temperatures(texts, question, **columns):
        return [1.0 if "degrees" in q else len(set(t)) / 10 for t, q in zip(texts, question)]

    zero = ["rl.accuracy_weight=0", "rl.step_validity_weight=0", "rl.efficiency_weight=0", "rl.max_new_tokens=8",
            "rl.ppo_epochs=1", "rl.prompts_per_step=4", "rl.group_size=4"]
    examples = load_examples(toy / "train.jsonl").examples
    assert 0.2 < sum("degrees" in e.question for e in examples) / len(examples) < 0.8  # precondition: both kinds

    def run(name, fn, *overrides):
        seen.clear()
        train_rl(_cfg(toy, tmp_path / name, "rl.max_steps=2", *zero, *overrides), toy / "init", progress=False, reward_fns=[fn])
        return [r.clone() for r in seen], _records(tmp_path / name)

    plain, _ = run("plain", constant_on_temperatures)
    assert any((r == r[:, :1]).all(-1).any() for r in plain)  # without it, constant groups reach the update
    dynamic, records = run("dynamic", constant_on_temperatures, "rl.dynamic_sampling=8")
    for rewards_PG, record in zip(dynamic, records):
        assert rewards_PG.shape == (4, 4) and not (rewards_PG == rewards_PG[:, :1]).all(-1).any()
        assert record["sampled_groups"] % 4 == 0 and record["sampled_groups"] >= 4
        varying = record["sampled_groups"] * (1 - record["all_equal_groups"])
        assert 4 <= round(varying) < 8  # rounds stop once 4 varying groups are in hand
    assert any(r["sampled_groups"] > 4 for r in records)
    flat, records = run("flat", lambda texts, **c: [0.5] * len(texts), "rl.dynamic_sampling=2")
    assert all(r.shape == (4, 4) and (r == 0.5).all() for r in flat)
    assert all(r["sampled_groups"] == 12 and r["all_equal_groups"] == 1.0 for r in records)


def test_non_finite_loss_skips_the_step(toy):
    model = load_pretrained(toy / "init")
    cfg = RLConfig(train_data="x", lr=1e-2)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.95))
    ids = torch.randint(7, 160, (2, 12))
    mask = torch.zeros(2, 11)
    mask[:, 5:] = 1
    batch = MicroBatch(ids, mask, torch.tensor([1.0, -1.0]), logp_old_BT=torch.full((2, 11), float("nan")))
    before = [p.detach().clone() for p in model.parameters()]
    assert policy_update(model, optimizer, [batch], cfg) == {"skipped": 1}
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters()) and not optimizer.state
    # the same batch with finite old log-probs trains
    with torch.no_grad():
        batch.logp_old_BT, _ = token_logprobs(model.train(), ids)
    result = policy_update(model, optimizer, [batch], cfg)
    assert result["skipped"] == 0 and math.isfinite(result["loss"])
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("routing_replay", [False, True])
def test_first_pass_gives_the_rollout_policy_as_a_separate_forward_would(toy, routing_replay):
    # the old-policy log-probs and experts taken from the first update pass's forward equal a separate
    # no-grad forward's (the way it was done before), and the two-pass update is the same up to the
    # float rounding between the two forwards (which AdamW magnifies only where a gradient is ~0)
    cfg = RLConfig(train_data="x", lr=1e-2, ppo_epochs=2, routing_replay=routing_replay)
    torch.manual_seed(0)
    ids = torch.randint(7, 160, (4, 14))
    mask = torch.zeros(4, 13)
    mask[:, 6:] = 1
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    runs = []
    for separate in (True, False):
        model = load_pretrained(toy / "init")
        start = [p.detach().clone() for p in model.parameters()]
        optimizer = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.95))
        batch = MicroBatch(ids, mask, advantages)
        if separate:
            with torch.no_grad():
                batch.logp_old_BT, _ = token_logprobs(model.train(), ids)
            batch.topk_old = model.last_routing()
        passes = [policy_update(model, optimizer, [batch], cfg) for _ in range(cfg.ppo_epochs)]
        moved = torch.cat([(p.detach() - s0).flatten() for p, s0 in zip(model.parameters(), start)])
        runs.append((batch, passes, moved))
    (batch_a, passes_a, moved_a), (batch_b, passes_b, moved_b) = runs
    torch.testing.assert_close(batch_b.logp_old_BT, batch_a.logp_old_BT, atol=1e-5, rtol=1e-5)
    assert len(batch_b.topk_old) == len(batch_a.topk_old) > 0
    assert all(torch.equal(x, y) for x, y in zip(batch_a.topk_old, batch_b.topk_old))
    assert passes_a[0]["clip_fraction"] == passes_b[0]["clip_fraction"] == 0.0  # ratio 1 on the first pass
    assert passes_b[0]["routing_mismatch"] == 0.0
    for pa, pb in zip(passes_a, passes_b):
        assert pb["loss"] == pytest.approx(pa["loss"], abs=1e-6)
    assert moved_a.norm() > 0 and (moved_a - moved_b).norm() < 1e-2 * moved_a.norm()


def test_resume_reproduces_the_uninterrupted_run(toy, tmp_path):
    # KL to the reference, two passes per batch, routing replay and final/ part of the way from the init: every path of the loop
    extra = ["rl.beta=0.04", "rl.routing_replay=true", "rl.update_share=0.5"]
    train_rl(_cfg(toy, tmp_path / "full", *extra), toy / "init", progress=False, reward_fns=[_distinct_chars])
    full = _records(tmp_path / "full")
    assert len(full) == 4 and all("kl" in r for r in full) and any(r["clip_fraction"] > 0 for r in full)

    cfg = _cfg(toy, tmp_path / "split", *extra)
    train_rl(cfg, toy / "init", progress=False, stop_at=2, reward_fns=[_distinct_chars])
    assert not (tmp_path / "split" / "final").exists()
    train_rl(cfg, toy / "init", resume=True, progress=False, reward_fns=[_distinct_chars])
    split = _records(tmp_path / "split")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]  # noqa: E731
    assert strip(split) == strip(full)
    a, b = load_pretrained(tmp_path / "full" / "final"), load_pretrained(tmp_path / "split" / "final")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_update_share_puts_final_part_of_the_way_from_the_init_and_last_keeps_the_trained_weights(toy, tmp_path):
    cfg = _cfg(toy, tmp_path / "run", "rl.max_steps=2", "rl.update_share=0.3")
    final = train_rl(cfg, toy / "init", progress=False, reward_fns=[_distinct_chars])
    init, last, mixed = (load_pretrained(d) for d in (toy / "init", tmp_path / "run" / "last", final))
    trained = dict(last.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in init.named_parameters())  # RL moved the weights
    for name, p in init.named_parameters():
        torch.testing.assert_close(dict(mixed.named_parameters())[name], p + 0.3 * (trained[name] - p))
    for (name, b_last), b_final in zip(last.named_buffers(), mixed.buffers()):
        assert torch.equal(b_last, b_final), name  # the MoE load statistics are the trained model's
    full = train_rl(_cfg(toy, tmp_path / "full", "rl.max_steps=2"), toy / "init", progress=False, reward_fns=[_distinct_chars])
    assert all(torch.equal(a, b) for a, b in zip(load_pretrained(full).parameters(), last.parameters()))  # share 1: the same run's weights
    with pytest.raises(ValueError, match="share"):
        interpolate_from(mixed, parameters_of(init), 1.5)


def test_checkpoints_keep_the_init_layer_drop(toy, tmp_path):
    init = tmp_path / "init"
    model, tok = load_pretrained(toy / "init"), Tokenizer.load(toy / "init")
    model.config = model.config.model_copy(update={"layer_drop": 0.5})
    save_pretrained(model, init, extra=tok.save)
    cfg = _cfg(toy, tmp_path / "run", "rl.max_steps=1", "rl.ppo_epochs=1")
    final = train_rl(cfg, init, progress=False, reward_fns=[_distinct_chars])
    assert load_pretrained(final).config.layer_drop == 0.5
    # RL ran without it: the update forward routed exactly as the rollout-policy forward (with layers
    # dropped at random in either, layer 1 would see another input and route differently)
    assert _records(tmp_path / "run")[0]["routing_mismatch"] == 0


def test_config_sections_and_overrides_are_validated(tmp_path):
    with pytest.raises(ValueError, match="must name their section"):
        load_rl_config(RL_TINY, ["lr=1"])
    with pytest.raises(ValueError, match="unknown key 'rl.learning_rate'"):
        load_rl_config(RL_TINY, ["rl.learning_rate=1"])
    both = tmp_path / "both.yaml"
    both.write_text("model:\n  dim: 64\nrl:\n  train_data: x\n")
    with pytest.raises(ValueError, match="--init checkpoint"):
        load_rl_config(str(both), [])
    cfg = load_rl_config(RL_TINY, ["rl.advantage=mean_only", "rl.beta=0.04"])
    assert cfg.advantage == "mean_only" and cfg.beta == 0.04 and cfg.group_size == 4


def test_rl_reward_defaults_come_from_one_place_and_differ_from_evaluation_by_the_named_guards():
    import dataclasses

    from r1kit.evaluate import SCORING
    from r1kit.reward import TRAINING_REWARD, RewardConfig

    assert grpo.reward_config(RLConfig(train_data="x")) == TRAINING_REWARD
    spec, training = dataclasses.asdict(RewardConfig()), dataclasses.asdict(TRAINING_REWARD)
    assert {k for k in spec if spec[k] != training[k]} == {"step_validity", "question_coverage", "think_in_prompt"}
    assert SCORING == dataclasses.replace(RewardConfig(), think_in_prompt=True)  # evaluation: the article's R
