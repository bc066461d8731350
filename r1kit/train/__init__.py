"""Training (S10-S11): the shared loop (loop.py), SFT, GRPO (grpo.py + grpo_loss.py) and the optimisers."""
