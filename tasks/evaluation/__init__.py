"""The evaluation stage: classifier and causal-LM evaluation and its
Prefect task (task)."""
