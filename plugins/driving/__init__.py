"""Built-in driving domain plugin."""
