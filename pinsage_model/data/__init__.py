"""Users' inputs: file checks, the public formats (MovieLens, adjacency lists, tables) with
their quarantine, the data contracts every stage reads and writes, and the synthetic data set."""
