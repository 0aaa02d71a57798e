"""The planning stage: the training plan and its estimate (plan) and its
Prefect tasks (task)."""
