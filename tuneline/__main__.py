from tuneline.cli import app

app()
