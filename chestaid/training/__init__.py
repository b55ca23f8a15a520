"""Training: datasets over the shared preprocessing, augmentation, and the training loop."""
