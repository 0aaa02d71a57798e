"""Causal language-model methods, one module per method, their shared
config (config) and the loop that trains them (runner)."""
