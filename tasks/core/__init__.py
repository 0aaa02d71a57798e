"""Plain helpers every stage uses (errors, secrets, settings, atomic files, locks,
plots, the promotion gate's statistics, the garbage collector's policy): they import neither
Prefect nor torch."""
