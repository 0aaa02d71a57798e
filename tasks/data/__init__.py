"""The data stage: reading, normalising, fingerprinting and caching a recipe's
data (load), its Prefect task (task) and watching sources for new data (watching)."""
