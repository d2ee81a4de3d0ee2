"""How a model writes: batched generation and label scoring, behind one engine interface (transformers, vLLM, an HTTP endpoint)."""
