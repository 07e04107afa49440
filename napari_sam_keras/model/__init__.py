"""The model: architecture config, building, loading, checkpoint conversion, weights cache, compiled runners."""
