"""Fine-tuning SAM (and its instance decoder) on annotated images, and measuring the gain."""
