"""Peer benchmarks: other implementations measured on our inputs, each in its own environment."""
