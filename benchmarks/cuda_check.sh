#!/usr/bin/env bash
# The GPU path end to end, on a machine with CUDA: the demo data, the demo model trained by SFT on
# --device cuda for a few minutes of a clock-decayed schedule (dtype auto: bf16 on a GPU with it),
# greedy evaluation on CUDA, and the CPU bf16/fp32 sweep on that machine's processor.
#   bash benchmarks/cuda_check.sh OUT_DIR [SFT_MINUTES]
# Writes OUT_DIR/{lscpu.txt,nvidia-smi.txt,sft_metrics.jsonl,cuda_eval.json,bf16_cpu.json,log}.
set -euo pipefail
out=${1:?OUT_DIR}; minutes=${2:-3}
mkdir -p "$out"; work=$(mktemp -d)
lscpu > "$out/lscpu.txt"; nvidia-smi > "$out/nvidia-smi.txt" || true
python3 -m r1kit.cli data synth --n 30000 --seed 1 --steps 1-4 --max-operand 100 --out "$work/train.jsonl" \
  --test-n 500 --test-steps 2-3 --test-out "$work/test.jsonl"
python3 -m r1kit.cli train sft --config configs/demo.yaml --device cuda --dtype auto --no-progress \
  sft.train_data="$work/train.jsonl" sft.eval_data=null sft.out_dir="$work/sft" sft.max_minutes="$minutes"
cp "$work/sft/metrics.jsonl" "$out/sft_metrics.jsonl"
python3 -m r1kit.cli eval "$work/sft/final" --data "$work/test.jsonl" --n 500 --device cuda --dtype auto --out "$out/cuda_eval.json"
python3 benchmarks/bf16_cpu.py --threads 2 --steps 4 --out "$out/bf16_cpu.json"
