"""The registry stage: lineage, registration, promotion and rollback in the
MLflow registry, approval and continual training, with their Prefect tasks (task)."""
