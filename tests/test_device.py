"""r1kit.device: one decision for device and dtype, a clear error for a GPU that is not there, the
choice logged in a run's metrics and kept when the run resumes."""

from pathlib import Path

import pytest
import torch

from r1kit import device as device_mod
from r1kit.cli import main
from r1kit.data.schema import read_metrics, write_jsonl
from r1kit.data.synth import synth
from r1kit.device import BF16_CPU_MIN_PARAMS, DeviceError, choose_dtype, resolve_device
from r1kit.train.sft import load_run_config, train_sft

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_auto_and_cpu_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@NO_CUDA
def test_cuda_without_a_gpu_says_why():
    with pytest.raises(DeviceError, match="device 'cuda' was asked for, but .*use device=cpu or device=auto"):
        resolve_device("cuda")


@NO_CUDA
def test_train_sft_on_cuda_without_a_gpu_fails_clearly_from_the_cli(capsys, tmp_path):
    assert main(["train", "sft", "--config", TINY, "--device", "cuda", f"sft.train_data={tmp_path / 'x.jsonl'}",
                 f"sft.out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1kit train: error: device 'cuda' was asked for") and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_the_cpu_dtype_follows_native_bf16_and_model_size(monkeypatch):
    assert choose_dtype("bf16", "cpu", 10) == ("bf16", "asked for")
    assert choose_dtype("fp32", "cpu", 10**10) == ("fp32", "asked for")
    monkeypatch.setattr(device_mod, "cpu_native_bf16", lambda: (False, "no amx_bf16 / avx512_bf16 flag"))
    dtype, reason = choose_dtype("auto", "cpu", 10**10)
    assert dtype == "fp32" and "without native bf16" in reason
    assert choose_dtype("auto", "cpu", 10**6, training=True)[0] == "fp32"  # no bf16 products without native bf16
    monkeypatch.setattr(device_mod, "cpu_native_bf16", lambda: (True, "amx_bf16"))
    assert choose_dtype("auto", "cpu", BF16_CPU_MIN_PARAMS - 1)[0] == "fp32"
    dtype, reason = choose_dtype("auto", "cpu", BF16_CPU_MIN_PARAMS)
    assert dtype == "bf16" and "amx_bf16" in reason
    # training a smaller model: bf16 products only; a larger one: bf16 autocast, as for inference
    dtype, reason = choose_dtype("auto", "cpu", BF16_CPU_MIN_PARAMS - 1, training=True)
    assert dtype == "bf16-matmul" and "amx_bf16" in reason and "products" in reason
    assert choose_dtype("auto", "cpu", BF16_CPU_MIN_PARAMS, training=True)[0] == "bf16"
    assert choose_dtype("bf16-matmul", "cpu", 10) == ("bf16-matmul", "asked for")
    with pytest.raises(DeviceError, match="unknown dtype 'fp16'"):
        choose_dtype("fp16", "cpu", 10)


def test_a_run_logs_its_choice_and_a_resumed_run_keeps_it(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", synth(32, seed=0, steps=1, max_operand=10))
    common = [f"sft.train_data={tmp_path / 'train.jsonl'}", f"sft.out_dir={tmp_path / 'run'}", "sft.max_steps=6",
              "sft.log_every=1", "sft.device=cpu", "sft.eval_data=null"]
    model_cfg, cfg = load_run_config(TINY, common + ["sft.dtype=bf16"])
    train_sft(model_cfg, cfg, progress=False, stop_at=3)
    start = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert (start["event"], start["device"], start["dtype"], start["dtype_reason"]) == ("start", "cpu", "bf16", "asked for")

    model_cfg, cfg = load_run_config(TINY, common + ["sft.dtype=fp32"])  # asked differently on resume
    train_sft(model_cfg, cfg, resume=True, progress=False)
    resumed = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "resume"]
    assert [(r["step"], r["dtype"], r["dtype_reason"]) for r in resumed] == [(3, "bf16", "kept from the run being resumed")]


def test_the_engine_in_bf16_follows_fp32_greedy_tokens_on_a_tiny_model():
    from r1kit.config import model_config_from
    from r1kit.inference.engine import Engine, SamplingParams
    from r1kit.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(model_config_from({"preset": "tiny"})).eval()
    prompts = [[1, 5, 9, 13], [1, 7, 3]]
    fp32 = Engine(model, dtype="fp32").generate(prompts, SamplingParams(max_new_tokens=8))
    bf16 = Engine(model, dtype="bf16").generate(prompts, SamplingParams(max_new_tokens=8))
    # bf16 rounding may flip a near-tie late in a sequence; the first tokens agree
    assert [o.samples[0].token_ids[:3] for o in bf16] == [o.samples[0].token_ids[:3] for o in fp32]
