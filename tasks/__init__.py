"""Prefect tasks of tuneline, each a thin shell over plain functions in the same module."""
