"""What serves recommendations: versioned nearest-neighbour indexes (faiss) with their manifest
(``index``: build, publish, prune) and the one query API over a version (``query``: related
items and homefeeds), paper 3.5."""
