"""Plain helpers every stage uses (errors, secrets, settings, atomic files, locks,
plots, the promotion gate's statistics, the garbage collector's policy, work done ahead in a
forked process): they import neither Prefect nor torch."""
