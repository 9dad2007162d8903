"""The developer scripts; tests and benches import them as `scripts.NAME`."""
