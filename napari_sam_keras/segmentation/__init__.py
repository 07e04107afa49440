"""The official-style top layer: predictor, automatic mask generator, labels; volumes and time-lapses."""
