"""First weights shared by two model configs (issue 23, part A: ablations paired on the draw).

Builds the model `r1kit train sft` starts from at --seed (configs/demo.yaml's model section with the
--draw overrides, the vocabulary of --tokenizer), then saves its weights in the model of the --into
overrides: parameters the drawn model lacks (the multi-scale gate, say) stay as that model
initialises them, parameters only the drawn model has are dropped. Train from it with
`sft.init=OUT` and a config without a model section (sft.init brings its own model).

    python benchmarks/matched_draw.py --tokenizer runs/denseattn_s0/sft/final --seed 0 \
        --draw model.dim=96 model.n_layers=8 model.attention.kind=dense --into model.dim=96 model.n_layers=8 --out runs/init_ms0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from r1kit.config import load_model_config
from r1kit.data.tokenizer import Tokenizer
from r1kit.interop.checkpoint import save_pretrained
from r1kit.train.sft import model_for_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a checkpoint directory whose tokenizer SFT trained (the run's vocabulary)")
    parser.add_argument("--seed", type=int, required=True, help="SFT's seed (sft.seed), which draws the first weights")
    parser.add_argument("--draw", nargs="+", default=[], help="model overrides of the model whose first weights are drawn")
    parser.add_argument("--into", nargs="+", default=[], help="model overrides of the model that gets them")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--out", required=True, help="a new checkpoint directory")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"--out {out} exists and is not empty: choose a new directory (nothing was written)")

    tok = Tokenizer.load(args.tokenizer)
    torch.manual_seed(args.seed)  # as train_sft seeds before it builds the model
    drawn = model_for_tokenizer(load_model_config(args.config, args.draw), tok)
    torch.manual_seed(args.seed)
    target = model_for_tokenizer(load_model_config(args.config, args.into), tok)
    own = target.state_dict()
    shared = {name: value for name, value in drawn.state_dict().items() if name in own}
    mismatched = [name for name, value in shared.items() if value.shape != own[name].shape]
    if mismatched:
        raise SystemExit(f"the two models disagree on the shape of {mismatched[:5]}: no shared draw")
    target.load_state_dict(shared, strict=False)
    kept = sorted(set(own) - set(shared))
    print(f"{len(shared)} tensors from the draw; kept the model's own {len(kept)}: {kept[:4]}{' ...' if len(kept) > 4 else ''}")
    print(f"wrote {save_pretrained(target, args.out, tok.save)}")


if __name__ == "__main__":
    main()
