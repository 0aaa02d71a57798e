"""What talks to the servers: MLflow tracking, the Prefect API, global
concurrency limits and Prefect secret blocks."""
