"""`r1kit serve`: the engine behind an OpenAI-compatible HTTP API and a chat page (FastAPI + uvicorn,
imported only here: the rest of r1kit does not need them)."""
