"""Built-in satellite domain plugin."""
