"""The transformer (S1-S4): attention (dense and multi-scale), MoE, the model, and kernels/ (the fused CPU
kernel). Imports only r1kit.config: no training, tokenizer, quantisation or HTTP code."""
