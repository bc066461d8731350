"""Generation (S5-S9): the continuous-batching engine, sampling and KV caches."""
