"""Encoder (sequence classification) methods, one module per method,
and the loop that trains them (runner)."""
