import numpy as np

from pinsage_model.graph.csr import csr_rows, csr_subset

# rows: 0 -> [7, 8], 1 -> [], 2 -> [1, 2, 3]
INDPTR, INDICES = np.array([0, 2, 2, 5]), np.array([7, 8, 1, 2, 3])


def test_csr_rows():
    rows, cols = csr_rows(INDPTR, INDICES, np.array([2, 0]))
    assert rows.tolist() == [0, 0, 0, 1, 1] and cols.tolist() == [1, 2, 3, 7, 8]


def test_csr_subset_keeps_the_rows_in_the_given_order():
    ptr, idx = csr_subset(INDPTR, INDICES, np.array([2, 1, 0]))
    assert ptr.dtype == np.int64 and ptr.tolist() == [0, 3, 3, 5] and idx.tolist() == [1, 2, 3, 7, 8]
    ptr, idx = csr_subset(INDPTR, INDICES, np.array([], np.int64))
    assert ptr.tolist() == [0] and idx.tolist() == []
