"""Built-in medical domain plugin."""
