"""What a registered model needs at serving time: base-model loading, tiny
models, the on-disk artifact, the batched inference loop, prompts, the MLflow pyfunc
wrappers and reward models. No Prefect here."""
