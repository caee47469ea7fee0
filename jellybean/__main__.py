from jellybean.cli.main import app

app(prog_name="jellybean")
