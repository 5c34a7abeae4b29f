"""Command-line interface: one module per command. Nothing in atmos imports this package."""
