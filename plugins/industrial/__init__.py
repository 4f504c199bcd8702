"""Built-in industrial domain plugin."""
