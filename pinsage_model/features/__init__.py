"""Item features with TensorFlow Transform: the preprocessing function, its analysis, and applying
the saved transform to any item rows (paper 3.1)."""
