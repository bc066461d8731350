"""Interoperability: the on-disk checkpoint layout (checkpoint.py) and Hugging Face export (hf.py)."""
