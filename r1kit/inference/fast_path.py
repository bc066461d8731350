"""The complexity-gated fast path (S5): an early-exit graph, a calibrated estimator, and the gate.

    fast = FastPath.load("runs/demo/sft/final")   # fast_path.json, written by `r1kit calibrate`
    # P(the fast graph's final answer == the full graph's), per prompt
    p_N = fast.probability(probe_features(model, [prompt_ids], fast.probe_layers))
    graph = "fast" if p_N[0] > complexity_threshold else "full"  # the engine reads p from its prefill (PrefillGate)

The approximate graph is an early exit (LayerSkip): the first `exit_after` blocks, then the model's
final norm and head. It is accurate only on a model trained for it (`sft.early_exit_layers` adds
the exit's loss); `r1kit calibrate` measures each trained exit and stores the one it picks.

The estimator is a logistic regression on what a probe reads from the blocks both graphs compute
alike (the first `probe_layers` <= exit_after), so the choice is not circular: the residual stream
there at the prompt's last token, the prompt's token embeddings averaged (a bag of its words and
numbers), and its log length (`features`, version FEATURES). The last token is the one position a
prefill always computes (a cached prefix is not recomputed) and it attends to the whole prompt;
embeddings need no forward at all: so the engine reads the features inside the prefill itself
(PrefillGate), at no extra cost, whatever the prefix cache held. Its target is
whether the two graphs' greedy final answers agree; it is fitted on one part of held-out problems
and its reliability table (and expected calibration error) measured on the other part. The rule
matches the article: a request takes the fast path iff p > complexity_threshold, so a lower
threshold sends more requests there (1.0: none; 0.0: all).

Shape legend: N problems, R rows the gate routes in one forward, T tokens, F features, C model dim.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from r1kit.model.transformer import Transformer

FAST_PATH_FILE = "fast_path.json"
# what the estimator's features are; a fast_path.json fitted on other features is refused, not misread
FEATURES = "last_token_stream+mean_embedding+log_length"
# an estimate never reaches exactly 0 or 1, so threshold 0.0 sends every request to the fast path
# and 1.0 none, as the rule says
_P_FLOOR = 1e-6


@dataclass
class FastPath:
    exit_after: int  # the fast graph runs this many blocks, then the head
    probe_layers: int  # the estimator reads the residual stream after this many blocks (<= exit_after)
    feature_mean_F: list[float]  # the features' standardisation, from the fitting problems
    feature_std_F: list[float]
    weight_F: list[float]  # the logistic regression on standardised features
    bias: float
    # measured on problems the estimator was not fitted on: the reliability table (per bin of p: its
    # range, count, mean p, share of agreeing answers), ECE, and the threshold r1kit calibrate suggests
    reliability: list[dict] = field(default_factory=list)
    ece: float | None = None
    suggested_threshold: float | None = None
    report: dict = field(default_factory=dict)  # what calibrate measured (exits, agreement, accuracy loss per threshold)
    features: str | None = FEATURES  # the feature set the estimator was fitted on (None: before they were named)

    @classmethod
    def ungated(cls, exit_after: int) -> "FastPath":
        """The exit's graph with no estimator yet: only requests that ask for graph="fast" run it
        (calibration does, to measure it)."""
        return cls(exit_after, exit_after, [], [], [], 0.0)

    @property
    def gated(self) -> bool:
        """Whether it has an estimator (an ungated one runs only requests that ask for the fast graph)."""
        return bool(self.weight_F)

    def check(self, model: Transformer) -> None:
        n = model.config.n_layers
        if not 1 <= self.exit_after < n:
            raise ValueError(f"fast path: exit_after={self.exit_after} must lie in 1 .. {n - 1} for a model of {n} blocks")
        if not 0 <= self.probe_layers <= self.exit_after:
            raise ValueError(f"fast path: probe_layers={self.probe_layers} must lie in 0 .. exit_after={self.exit_after} "
                             "(the probe reads only blocks both graphs compute)")
        if self.gated and self.features != FEATURES:
            raise ValueError(f"fast path: the estimator was fitted on features {self.features!r}, this r1kit computes "
                             f"{FEATURES!r}: run r1kit calibrate CKPT --data FILE --overwrite")
        F = 2 * model.config.dim + 1
        if self.gated and not len(self.weight_F) == len(self.feature_mean_F) == len(self.feature_std_F) == F:
            raise ValueError(f"fast path: the estimator has {len(self.weight_F)} weights; this model's features number {F}")

    # ------------------------------------------------------------------ the gate

    def probability(self, features_NF: torch.Tensor) -> torch.Tensor:
        mean_F, std_F, weight_F = (torch.tensor(v, dtype=torch.float64) for v in (self.feature_mean_F, self.feature_std_F, self.weight_F))
        z_NF = (features_NF.double().cpu() - mean_F) / std_F
        return torch.sigmoid(z_NF @ weight_F + self.bias).clamp(_P_FLOOR, 1 - _P_FLOOR)

    # ------------------------------------------------------------------ storage

    def save(self, checkpoint: str | Path) -> Path:
        """Write fast_path.json into the checkpoint directory, atomically."""
        path = Path(checkpoint) / FAST_PATH_FILE
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fast_path.", suffix=".tmp")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from the checkpoint's other readers
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(self), f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, checkpoint: str | Path) -> "FastPath | None":
        """The checkpoint's fast path, or None when it has never been calibrated."""
        path = Path(checkpoint) / FAST_PATH_FILE
        if not path.is_file():
            return None
        try:
            return cls(**{"features": None} | json.loads(path.read_text()))  # no "features": fitted before they were named
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path} is not a fast path r1kit wrote ({e}); re-run r1kit calibrate") from None


class PrefillGate:
    """The gate as a batch applies it, inside an undecided request's prefill: the forward runs the
    first `probe_layers` blocks, the gate reads p from the stream there at the prompt's last token,
    and the row then stops at the exit (the fast path: its logits, K/V and first token are the early
    exit's, as that graph alone would give) or goes on through the full graph, in the same forward
    (the model's route_after)."""

    def __init__(self, fast_path: Callable[[], "FastPath | None"], threshold: Callable[[], float], model: Transformer):
        self.fast_path, self.threshold, self.model = fast_path, threshold, model  # the first two read at each call: both may change

    def route_after(self, depth_B: list[int] | None, undecided: dict[int, tuple]) -> tuple[int, Callable] | None:
        """The model's route_after for a prefill whose rows `undecided` (row -> (request, the index of
        its last prompt token in the forward)) await the gate, the others running at `depth_B` (None:
        all of the model's blocks); None when no row awaits it, and when the gate is shut (those
        requests then run on the full graph)."""
        if not undecided:
            return None
        fast, threshold = self.fast_path(), self.threshold()
        if not gate_open(fast, threshold):
            for request, _ in undecided.values():
                request.undecided = False
                request.run_on(None)
            return None

        def route(h_NTC: torch.Tensor, rows: list[int]) -> list[int]:
            routed = [(j, row) for j, row in enumerate(rows) if row in undecided]  # (position in h_NTC, row)
            requests = [undecided[row][0] for _, row in routed]
            h_last_RC = torch.stack([h_NTC[j, undecided[row][1]] for j, row in routed])
            mean_embedding_RC = torch.stack([self.model.embed(torch.tensor(r.prompt_ids, device=h_NTC.device)).mean(0)
                                             for r in requests])
            p_R = fast.probability(features(h_last_RC, mean_embedding_RC, [len(r.prompt_ids) for r in requests])).tolist()
            for request, p in zip(requests, p_R):
                request.undecided, request.output.fast_p = False, p
                request.run_on(fast.exit_after if p > threshold else None)
            depths = depth_B or [self.model.config.n_layers] * (max(rows) + 1)
            return [(undecided[row][0].exit_after or depths[row]) if row in undecided else depths[row] for row in rows]

        return fast.probe_layers, route


def gate_open(fast_path: FastPath | None, threshold: float) -> bool:
    """Whether the gate has anything to decide: a fitted estimator and a threshold below 1.0 (1.0: never fast)."""
    return fast_path is not None and fast_path.gated and threshold < 1.0


def features(h_last_NC: torch.Tensor, mean_embedding_NC: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """[N, 2C + 1] float64 (FEATURES): the residual stream after `probe_layers` blocks at each
    prompt's last token, the mean of the prompt's token embeddings, and log(prompt length)."""
    log_length_N1 = torch.tensor(lengths, dtype=torch.float64).log()[:, None]
    return torch.cat([h_last_NC.detach().double().cpu(), mean_embedding_NC.detach().double().cpu(), log_length_N1], dim=1)


@torch.no_grad()
def probe_features(model: Transformer, prompts: Sequence[Sequence[int]], probe_layers: int, batch_size: int = 64) -> torch.Tensor:
    """`features` of prompts run alone (calibration, benchmarks; the engine reads them from its
    prefill). Prompts of similar length run together, right-padded: attention is causal and MoE
    dispatch dropless at inference, so padding never reaches a prompt's own positions (its features
    equal its forward alone, up to float rounding)."""
    device = next(model.parameters()).device
    out = torch.zeros(len(prompts), 2 * model.config.dim + 1, dtype=torch.float64)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths_B = torch.tensor([len(prompts[i]) for i in rows])
            ids_BT = torch.zeros(len(rows), int(lengths_B.max()), dtype=torch.long)
            for r, i in enumerate(rows):
                ids_BT[r, : len(prompts[i])] = torch.tensor(list(prompts[i]))
            ids_BT = ids_BT.to(device)
            h_BTC = model.hidden_after(ids_BT, probe_layers)
            real_BT1 = (torch.arange(ids_BT.shape[1], device=device) < lengths_B.to(device)[:, None])[..., None]
            mean_embedding_BC = (model.embed(ids_BT) * real_BT1).sum(1) / lengths_B.to(device)[:, None]
            out[rows] = features(h_BTC[torch.arange(len(rows)), lengths_B - 1], mean_embedding_BC, lengths_B.tolist())
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------- fitting and calibration


def fit_logistic(features_NF: torch.Tensor, agree_N: torch.Tensor, l2: float) -> tuple[list[float], list[float], list[float], float]:
    """(feature mean, std, weights, bias) of an L2-regularised logistic regression (L-BFGS)."""
    x_NF = features_NF.double()
    mean_F, std_F = x_NF.mean(0), x_NF.std(0).clamp_min(1e-6)
    z_NF, y_N = (x_NF - mean_F) / std_F, agree_N.double()
    weight_F = torch.zeros(x_NF.shape[1], dtype=torch.float64, requires_grad=True)
    prior = float(y_N.mean().clamp(1e-3, 1 - 1e-3))
    bias = torch.tensor(math.log(prior / (1 - prior)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight_F, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z_NF @ weight_F + bias, y_N) + l2 * weight_F.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean_F.tolist(), std_F.tolist(), weight_F.detach().tolist(), float(bias.detach())


def _log_loss(p_N: torch.Tensor, y_N: torch.Tensor) -> float:
    p_N = p_N.clamp(1e-6, 1 - 1e-6)
    return float(-(y_N * p_N.log() + (1 - y_N) * (1 - p_N).log()).mean())


def fit_estimator(features_NF: torch.Tensor, agree_N: torch.Tensor, exit_after: int, probe_layers: int,
                  l2_grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), folds: int = 3) -> FastPath:
    """The estimator, its L2 strength chosen by `folds`-fold cross-validated log loss."""
    N = len(agree_N)
    if N < 2 * folds or agree_N.float().mean() in (0.0, 1.0):
        # nothing to learn beyond the base rate: the constant estimator
        rate = float(agree_N.double().mean()) if N else 0.0
        rate = min(max(rate, _P_FLOOR), 1 - _P_FLOOR)
        F = features_NF.shape[1]
        return FastPath(exit_after, probe_layers, [0.0] * F, [1.0] * F, [0.0] * F, math.log(rate / (1 - rate)))
    order = torch.arange(N)
    best_l2, best_loss = l2_grid[0], math.inf
    for l2 in l2_grid:
        losses = []
        for k in range(folds):
            held_N = order % folds == k
            params = fit_logistic(features_NF[~held_N], agree_N[~held_N], l2)
            probe = FastPath(exit_after, probe_layers, *params)
            losses.append(_log_loss(probe.probability(features_NF[held_N]), agree_N[held_N].double()))
        if sum(losses) / folds < best_loss:
            best_l2, best_loss = l2, sum(losses) / folds
    fast = FastPath(exit_after, probe_layers, *fit_logistic(features_NF, agree_N, best_l2))
    fast.report["l2"] = best_l2
    return fast


def reliability_table(p_N: torch.Tensor, agree_N: torch.Tensor, bins: int = 10) -> tuple[list[dict], float]:
    """(per bin of p: range, count, mean p, agreement share; expected calibration error)."""
    p_N, y_N = p_N.double(), agree_N.double()
    index_N = (p_N * bins).long().clamp(max=bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        in_bin = index_N == b
        n = int(in_bin.sum())
        row = {"p_from": b / bins, "p_to": (b + 1) / bins, "n": n, "mean_p": None, "agreement": None}
        if n:
            row["mean_p"], row["agreement"] = float(p_N[in_bin].mean()), float(y_N[in_bin].mean())
            ece += n / len(p_N) * abs(row["mean_p"] - row["agreement"])
        table.append(row)
    return table, ece


def accuracy_at_thresholds(p_N: torch.Tensor, agree_N: torch.Tensor, full_correct_N: torch.Tensor,
                           fast_correct_N: torch.Tensor, thresholds: Sequence[float]) -> list[dict]:
    """Per threshold t: the share routed to the fast path (p > t), the share of those whose fast
    answer equals the full one (calibration promises >= t), the gated accuracy, its loss against
    the full graph's and that loss's standard error (paired: per problem, full minus gated)."""
    full = full_correct_N.double()
    rows = []
    for t in thresholds:
        fast_N = p_N > t
        gated = torch.where(fast_N, fast_correct_N.double(), full)
        routed = int(fast_N.sum())
        loss_N = full - gated  # -1, 0 or 1 per problem; 0 wherever the full graph ran
        loss_se = float(loss_N.std() / len(p_N) ** 0.5) if len(p_N) > 1 else float("inf")
        rows.append({"threshold": t, "fast_share": routed / len(p_N), "routed": routed,
                     "agreement_routed": float(agree_N[fast_N].double().mean()) if routed else None,
                     "accuracy": float(gated.mean()), "loss": float(loss_N.mean()), "loss_se": loss_se})
    return rows


def suggest_threshold(rows: list[dict], max_loss: float = 0.01) -> float:
    """Of the thresholds whose accuracy loss stays within max_loss by one standard error (loss +
    loss_se <= max_loss), the one sending the most requests to the fast path (the highest such
    threshold on a tie); 1.0 (shut) when none sends any.

    Why the standard error: the loosest threshold whose measured loss fits is picked from a noisy
    curve, so its measured loss is optimistic (docs/benchmarks.md); one standard error is the usual
    guard against that selection (Breiman's one-standard-error rule)."""
    ok = [r for r in rows if r["loss"] + r["loss_se"] <= max_loss + 1e-12 and r["routed"] > 0]  # 1e-12: shares are float sums
    if not ok:
        return 1.0
    return max(ok, key=lambda r: (r["fast_share"], r["threshold"]))["threshold"]
