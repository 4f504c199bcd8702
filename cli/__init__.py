"""The ``segsuite`` command line (typer). Heavy libraries are imported inside commands."""
