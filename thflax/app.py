"""`python -m thflax.app --checkpoint PATH`: the web page (`thflax.inference.app`), at its short public path."""

from thflax.inference.app import run_cli

if __name__ == "__main__":
    run_cli()
