"""What serves recommendations: versioned nearest-neighbour indexes (faiss) with their manifest,
and reading them back (paper 3.5)."""
