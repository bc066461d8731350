"""The training loop shared by SFT and GRPO (S10, S11): everything a run does around its optimiser step.

A trainer (r1kit.train.sft, r1kit.train.grpo) builds its model, data and optimiser, then hands
this loop three functions: `train_step` (one optimiser step, returning that step's metrics),
`log_line` (the metric line for the steps since the last one) and `evaluate` (held-out metrics).
The loop owns the rest, once for both:
  - the compute dtype (r1kit.device.choose_dtype, for the device the trainer moved the model to),
    chosen once and logged with its reason and the device; a resumed run keeps the saved dtype;
  - resume: `last/trainer_state/` holds the optimiser's tensors, torch's RNG state, the step,
    the dtype and whatever `run_state` the trainer adds (SFT's weight averages; safetensors + JSON,
    no pickle); the metrics log is cut back to the saved step and
    the training time read from it, so budgets and snapshots count from the run's start;
  - metrics: JSONL, a start event, one line per `log_every` steps, evaluation lines (eval_*),
    snapshot events; reports and plots are rebuilt from it;
  - saving, atomically (r1kit.interop.checkpoint): `last/` with trainer state every `save_every`
    steps and at the end, `final/` at the end (after the trainer's `before_final`), `minutes_<m>/`
    at the training minutes asked for (and whatever the trainer's `on_snapshot` saves beside it);
  - evaluation every `eval_every` steps and at the end (and at the start, where the trainer asks);
  - stop rules: `max_steps`; `max_minutes` as a budget, not a deadline to overrun (no step starts
    that would end past it at the longest step time so far, so an RL run of 5-second steps asked
    for 8 minutes trains up to 8 minutes, not 8 plus a step); `stop_at`, an interruption after
    that step (last/ written, no final/), which tests use to check --resume;
  - a progress bar whose total is the budget: the larger of the step and time fractions, so it
    shows an ETA whether steps or minutes end the run.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Callable, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from r1kit.data.schema import read_metrics, write_text
from r1kit.device import autocast, choose_dtype
from r1kit.interop.checkpoint import is_r1kit_checkpoint, save_pretrained
from r1kit.model.transformer import Transformer

# what the clock schedule (max_minutes, decay_by=minutes, snapshots) counts; tests replace it with
# a scripted clock so the stop rule is checked exactly, whatever else the machine is doing
training_clock = time.perf_counter


class RunConfig(BaseModel):
    """The fields every training run has; SFTConfig and RLConfig add their own."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    train_data: str = Field(..., description="training JSONL (synthetic schema or GSM8K)")
    eval_data: str | None = Field(None, description="held-out JSONL for periodic greedy evaluation; None = no evaluation")
    out_dir: str = Field("runs/sft", description="where checkpoints and metrics go")
    max_steps: int = Field(1000, ge=1, description="optimiser steps (SFT) or rollout batches (RL); also the length of a step-counted schedule")
    max_minutes: float | None = Field(None, gt=0, description="optional budget of training time (evaluation excluded): no step starts that would end past it at the longest step time so far")
    seed: int = Field(0, description="one seed for initialisation, data order, layer drop and rollout sampling")
    log_every: int = Field(10, ge=1, description="steps between metric lines (averaged over the window)")
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0 = only at the end")
    eval_n: int = Field(200, ge=1, description="held-out problems per evaluation")
    eval_batch_size: int = Field(64, ge=1, description="prompts decoded together in evaluation")
    max_new_tokens: int = Field(128, ge=1, description="generation budget per completion (evaluation, rollouts); the demo's traces take ~60-100")
    save_every: int = Field(500, ge=1, description="steps between last/ checkpoints")
    snapshot_minutes: list[float] = Field(
        [], description="training minutes at which to keep the weights in out_dir/minutes_<m>/ (accuracy-vs-minutes curves from one run); "
        "SFT keeps its weight averages then too, in out_dir/minutes_<m>_average_<kind>_<value>/"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' takes CUDA when torch sees a GPU, else the CPU (r1kit.device)")
    dtype: Literal["auto", "fp32", "bf16", "bf16-matmul"] = Field(
        "auto", description="training's compute precision; 'auto' picks bf16 only on a GPU with bf16 or a CPU with native bf16 and a model past "
        "the size where it was measured to pay, and on such a CPU below it bf16-matmul (bf16 products, fp32 elsewhere; r1kit.device); "
        "without native bf16 units a CPU runs bf16 ~13x slower than fp32"
    )


# ----------------------------------------------------------------------------- data order


def batch_indices(lengths: list[int], batch_size: int, micro_step: int, seed: int, window: int = 1) -> list[int]:
    """Examples of one micro-batch: a pure function of the global micro-step, so resuming needs no
    data-loader state. Each epoch is a fresh seeded permutation. With window > 1, the examples of
    `window` consecutive micro-batches are sorted by length and regrouped (in a seeded order), so
    short and long examples pad less; every example is still seen once per epoch."""
    group, slot = divmod(micro_step, window)
    pool = []
    start = group * window * batch_size
    for k in range(start, start + window * batch_size):
        epoch, pos = divmod(k, len(lengths))
        pool.append(_permutation(len(lengths), seed, epoch)[pos])
    if window > 1:
        pool.sort(key=lambda i: lengths[i])
        order = list(range(window))
        random.Random(f"{seed}:{group}").shuffle(order)
        slot = order[slot]
    return pool[slot * batch_size : (slot + 1) * batch_size]


_PERM_CACHE: dict[tuple[int, int, int], list[int]] = {}


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        _PERM_CACHE.clear()  # one epoch at a time is enough
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        _PERM_CACHE[key] = order
    return _PERM_CACHE[key]


# ----------------------------------------------------------------------------- trainer state


def save_trainer_state(directory: Path, optimizer: torch.optim.Optimizer, step: int, dtype: str, config: dict,
                       run_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """`run_tensors`: the rest of the run's state that a resumed run needs (SFT's running weight averages)."""
    directory.mkdir()
    state = optimizer.state_dict()
    tensors = {"torch_rng": torch.get_rng_state()}
    tensors.update({f"run.{k}": v.detach().cpu().contiguous() for k, v in (run_tensors or {}).items()})
    scalars: dict[str, dict] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    save_file(tensors, str(directory / "state.safetensors"))
    meta = {"step": step, "dtype": dtype, "config": config, "param_groups": state["param_groups"], "scalars": scalars}
    (directory / "state.json").write_text(json.dumps(meta))


def load_trainer_state(directory: Path, optimizer: torch.optim.Optimizer) -> tuple[int, str | None, dict[str, torch.Tensor]]:
    """Restores the optimiser and torch's RNG; returns (step, the saved dtype or None for states
    written before the dtype was saved, the run tensors save_trainer_state was given)."""
    meta = read_trainer_meta(directory)
    tensors = load_file(str(directory / "state.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        per_param.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["torch_rng"])
    run_tensors = {k.removeprefix("run."): v for k, v in tensors.items() if k.startswith("run.")}
    return meta["step"], meta.get("dtype"), run_tensors


def read_trainer_meta(directory: Path) -> dict:
    return json.loads((directory / "state.json").read_text())


def check_same_settings(saved: dict | None, now: dict, section: str, ignore: frozenset[str] = frozenset({"device", "dtype"})) -> None:
    """A resumed run must continue with the settings it was saved with (else its losses are not the
    uninterrupted run's, and its metrics mix two runs); names every differing key. `saved` None: a
    state written before settings were saved, nothing to compare."""
    if saved is None:
        return
    differ = [f"{section}.{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
              if k not in ignore and saved.get(k) != now.get(k)]
    if differ:
        raise ValueError("--resume: the run was saved with other settings (" + "; ".join(differ) + "); resume with "
                         "the saved settings, or start a new run in another out_dir")


# ----------------------------------------------------------------------------- metrics


def log_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint being resumed, and a last line cut
    short by a crash mid-write; any other unreadable line is an error naming it."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a crash mid-write: the line never finished
            raise ValueError(f"{path}:{number}: not a JSON line; the metrics log is damaged") from None
        if record.get("step", 0) <= step:
            keep.append(line)
    write_text(path, "".join(line + "\n" for line in keep))  # atomic: a crash here keeps the old log


def resumed_train_time(path: Path) -> float:
    """Training seconds already spent by the run whose (truncated) metrics are at `path`."""
    return 60 * max((r.get("train_minutes", 0.0) for r in read_metrics(path)), default=0.0)


def routing_summary(model: Transformer) -> dict:
    """Mean expert utilisation and worst MaxVio over MoE layers, last forward ({} without MoE)."""
    routing = model.routing_stats()
    if not routing:
        return {}
    return {"utilisation": sum(r["utilisation"] for r in routing) / len(routing),
            "max_vio": max(r["max_vio"] for r in routing)}


# ----------------------------------------------------------------------------- the loop


def start_fresh(out: Path, overwrite: bool) -> None:
    """A new run goes into an empty (or new) out_dir. A non-empty one is refused unless `overwrite`:
    then the earlier run's checkpoints (last/, final/, minutes_*/, average_*/, those r1kit wrote) are removed,
    so none of them survives to be taken for this run's; other files stay."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise RunDirError(f"{out} is not empty: --resume continues the run in it, --overwrite starts a new one there "
                          f"(its last/, final/, minutes_*/, average_*/ and metrics.jsonl are replaced), or choose another out_dir")
    for d in [out / "last", out / "final", *out.glob("minutes_*"), *out.glob("average_*")]:
        if is_r1kit_checkpoint(d):
            shutil.rmtree(d)


def out_of_time(cfg: RunConfig, train_seconds: float, longest_step_seconds: float) -> bool:
    """max_minutes is a budget, not a deadline to overrun: the run is out of time when another step
    as long as the longest so far would take it past the budget."""
    return cfg.max_minutes is not None and train_seconds + longest_step_seconds > cfg.max_minutes * 60


class RunState(Protocol):
    """Run state beyond the model and optimiser that --resume must restore (torch's Stateful shape)."""

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None: ...


class RunDirError(ValueError):
    """A run directory that a new run would clobber."""


class TrainingLoop:
    """One run's state around its optimiser steps (the module docstring lists what it owns).
    Construct it after the model and optimiser: on resume it restores the optimiser, the RNG and
    the dtype from `last/trainer_state`."""

    def __init__(self, cfg: RunConfig, name: str, model: Transformer, optimizer: torch.optim.Optimizer,
                 resume: bool, start_record: dict, save_extra: Callable[[Path], None],
                 save_model: Callable[[Transformer, Path, Callable], None] = save_pretrained, overwrite: bool = False,
                 run_state: RunState | None = None, before_final: Callable[[], None] | None = None,
                 on_snapshot: Callable[[Path], dict] | None = None):
        """`run_state`: more of the run's state to keep in last/trainer_state and restore on resume;
        `before_final()`: called once the trained weights are in last/, before final/ is written
        and the end evaluation runs (SFT puts its weight average into the model there);
        `on_snapshot(directory)`: called once a snapshot's weights are in `directory`, to save more
        beside it (SFT: its weight averages at that minute); what it returns joins the snapshot event."""
        self.cfg, self.name, self.model, self.optimizer = cfg, name, model, optimizer
        self._run_state, self._before_final, self._on_snapshot = run_state, before_final, on_snapshot
        self.out = Path(cfg.out_dir)
        self.last, self.final, self.metrics_path = self.out / "last", self.out / "final", self.out / "metrics.jsonl"
        self._save_extra, self._save_model = save_extra, save_model
        self.device = next(model.parameters()).device
        self.resumed = resume
        self.step, self.train_time = 0, 0.0  # train_time: seconds of training so far (evaluation excluded)
        self.dtype, reason = choose_dtype(cfg.dtype, self.device, model.num_params(), training=True)
        if resume:
            check_same_settings(read_trainer_meta(self.last / "trainer_state").get("config"), cfg.model_dump(), name)
            self.step, saved_dtype, run_tensors = load_trainer_state(self.last / "trainer_state", optimizer)
            if run_state is not None:
                run_state.load_state_dict(run_tensors)
            if saved_dtype is not None and saved_dtype != self.dtype:
                self.dtype, reason = saved_dtype, "kept from the run being resumed"
            truncate_metrics(self.metrics_path, self.step)
            self.train_time = resumed_train_time(self.metrics_path)
        else:
            start_fresh(self.out, overwrite)
        self.out.mkdir(parents=True, exist_ok=True)
        choice = {"device": str(self.device), "dtype": self.dtype, "dtype_reason": reason}
        if resume:
            log_metrics(self.metrics_path, {"event": "resume", "step": self.step, **choice})
        else:
            self.metrics_path.write_text("")
            log_metrics(self.metrics_path, {"event": "start", **start_record, **choice})
        self._bar = None

    def autocast(self):
        """The run's compute precision for a training forward pass."""
        return autocast(self.device, self.dtype)

    def generation_autocast(self):
        """The precision to generate in (evaluation, rollouts): the run's, except bf16-matmul, which
        was measured on training steps only; decoding's small products stay fp32, as in the engine."""
        return autocast(self.device, "fp32" if self.dtype == "bf16-matmul" else self.dtype)

    def log(self, record: dict) -> None:
        log_metrics(self.metrics_path, record)

    def note(self, message: str) -> None:
        """A line on the terminal that does not break the progress bar."""
        (self._bar.write if self._bar is not None else print)(message)

    def save(self, directory: Path, with_state: bool) -> None:
        def extra(d: Path) -> None:
            self._save_extra(d)
            if with_state:
                save_trainer_state(d / "trainer_state", self.optimizer, self.step, self.dtype, self.cfg.model_dump(),
                                   self._run_state.state_dict() if self._run_state is not None else None)

        self._save_model(self.model, directory, extra)

    def evaluate_and_log(self, evaluate: Callable[[], dict]) -> None:
        with self.generation_autocast():
            summary = evaluate()
        self.model.train()
        self.log({"step": self.step, "train_minutes": self.train_time / 60, **{f"eval_{k}": v for k, v in summary.items()}})

    def run(self, train_step: Callable[[int, float], dict], log_line: Callable[[list[dict], float], dict],
            postfix: Callable[[dict], dict], evaluate: Callable[[], dict] | None = None,
            eval_at_start: bool = False, stop_at: int | None = None, progress: bool = True) -> Path:
        """Steps until a stop rule; returns final/ (or last/ when `stop_at` interrupted the run).
        `train_step(step, train_seconds)` takes optimiser step `step` (counted from 0) and returns
        its metrics; `log_line(records, seconds)` makes a metric line from the steps' records and
        their total time; `postfix(line)` picks what the progress bar shows of a line."""
        cfg = self.cfg
        if evaluate and eval_at_start and not self.resumed:
            self.evaluate_and_log(evaluate)
        self.model.build_kernels()  # a first compile is not training time
        snapshots = {m: self.out / f"minutes_{m:g}" for m in sorted(cfg.snapshot_minutes)}
        snapshots = {m: d for m, d in snapshots.items() if not d.exists()}  # a resumed run keeps earlier ones
        self._bar = _progress_bar(self.name, progress)
        self._show_progress()
        window, window_time, longest_step = [], 0.0, 0.0
        self.model.train()
        try:
            while self.step < cfg.max_steps:
                t0 = training_clock()
                record = train_step(self.step, self.train_time)
                self.step += 1
                elapsed = training_clock() - t0
                self.train_time += elapsed
                longest_step = max(longest_step, elapsed)
                window.append(record)
                window_time += elapsed
                for minutes in [m for m in snapshots if self.train_time >= m * 60]:
                    directory = snapshots.pop(minutes)
                    self.save(directory, with_state=False)
                    extra = self._on_snapshot(directory) if self._on_snapshot is not None else {}
                    self.log({"event": "snapshot", "step": self.step, "minutes": minutes, "train_minutes": self.train_time / 60, **extra})
                over = out_of_time(cfg, self.train_time, longest_step)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps or over:  # the last steps are logged too
                    line = {"step": self.step, **log_line(window, window_time), "train_minutes": self.train_time / 60,
                            **routing_summary(self.model)}
                    self.log(line)
                    self._bar.set_postfix(step=self.step, **postfix(line))
                    window, window_time = [], 0.0
                self._show_progress()

                if evaluate and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps and not over:
                    self.evaluate_and_log(evaluate)
                if self.step % cfg.save_every == 0 and self.step < cfg.max_steps:
                    self.save(self.last, with_state=True)
                if over:
                    break
                if stop_at is not None and self.step >= stop_at:
                    self.save(self.last, with_state=True)
                    return self.last
        finally:
            self._bar.close()
            self._bar = None
        self.save(self.last, with_state=True)
        if self._before_final is not None:
            self._before_final()
        self.save(self.final, with_state=False)
        if evaluate:
            self.evaluate_and_log(evaluate)
        return self.final

    def _show_progress(self) -> None:
        """The bar counts thousandths of the budget: the larger of the step and time fractions."""
        cfg = self.cfg
        done = self.step / cfg.max_steps
        if cfg.max_minutes is not None:
            done = max(done, self.train_time / (60 * cfg.max_minutes))
        self._bar.update(min(1000, int(1000 * done)) - self._bar.n)  # update(), not n =: tqdm's rate and ETA follow it


def _progress_bar(desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=1000, disable=not enabled, desc=desc, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
