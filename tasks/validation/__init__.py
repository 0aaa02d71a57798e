"""The validation stage: the data contract run (contract) and its Prefect
task (task)."""
