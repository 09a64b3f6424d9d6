"""Layer-wise inference in process (paper 3.4): each node's representation at each layer computed
once, and pooled collection embeddings."""
