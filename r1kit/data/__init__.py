"""Data: the example schema and JSONL IO (schema.py), the tokenizer, and the synthetic generator (synth/).
Pure Python: no torch."""
