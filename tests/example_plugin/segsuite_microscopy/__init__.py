"""Example third-party segsuite plugin."""
