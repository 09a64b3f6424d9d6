"""The PinSage network and how it is trained (paper 3.2, 3.3): Keras layers, MINIBATCH re-indexing,
the producer's batches, losses, the learning-rate schedule, the training loop, the user head,
learned id embeddings and the model's export format."""
