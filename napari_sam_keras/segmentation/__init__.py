"""The official-style top layer: predictor, automatic mask generator, labels."""
