"""Export layer (``s2s.export``): turns the networks of the core package into the model repository's artifacts."""
