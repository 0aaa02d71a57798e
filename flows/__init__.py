"""Prefect flows: they sequence tasks, pass references and apply gates, nothing more."""
