"""Pre- and post-processing of images, prompts and masks (numpy only, no Keras)."""
