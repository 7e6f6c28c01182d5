"""A model's life: train, evaluate, package, version, publish; its inference handlers and its server."""
