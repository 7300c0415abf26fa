"""Train scripts, one per experiment: `python -m train.<exp> --help`."""
