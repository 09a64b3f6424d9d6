"""The bipartite item-collection graph in CSR, and the random-walk kernels over it: importance
neighbourhoods and Personalized PageRank hard negatives (paper 3.2, 3.3)."""
