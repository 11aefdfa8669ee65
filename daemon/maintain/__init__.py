"""Model maintenance: evaluate champions and challengers and train challengers, always in worker processes."""
