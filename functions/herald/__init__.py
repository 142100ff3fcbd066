"""Herald's shared code: models, settings, stores, channels and the logic every function runs."""
