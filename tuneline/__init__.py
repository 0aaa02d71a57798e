"""tuneline: declarative fine-tuning recipes run as Prefect flows and registered in MLflow."""

__version__ = "0.1.0"
