"""The tokenization stage: encoder and causal encoding (encoding) and its
Prefect task (task)."""
