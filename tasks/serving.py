"""Kept importable for models already registered: their MLflow pyfunc pickled its python_model
class by reference to `tasks.serving.<Class>`, so unpickling them imports this module. The code
lives in `tasks.models.serving`; import it from there."""

from tasks.models.serving import CausalLMModel, ClassifierModel, RewardScorerModel

__all__ = ["CausalLMModel", "ClassifierModel", "RewardScorerModel"]
