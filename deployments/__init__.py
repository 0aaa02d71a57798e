"""The shipped recipes (`deployments/*.yaml`) and the code that turns recipes into Prefect
deployments: schedules from the recipe's `deploy` block, a trigger on new curated data, one run
at a time per recipe, and the typed recipe as the run form in the Prefect UI."""
