"""Files the project reads and writes: images, label images, and the atomic-write rule."""
