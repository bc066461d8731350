"""Compiled kernels the model may use instead of plain torch ops (built on first use, with a fallback)."""
