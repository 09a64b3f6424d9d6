"""User head on data without event times: random complementary input/target subsets (issue #25)."""

import numpy as np

from pinsage_model.config import UserHeadConfig
from pinsage_model.model.user_head import _head_batch


def _batch(seed: int, ordered: bool):
    # user 0 holds items 0..5, user 1 items 6..8 (their order in the row means nothing without times)
    indptr, seq = np.array([0, 6, 9]), np.arange(9)
    cfg = UserHeadConfig(batch_size=8, recency_half_life=3.0)
    return _head_batch(np.random.default_rng(seed), np.array([0, 1]), indptr, seq, 9, cfg, ordered), seq, indptr


def _rows(inp, targets, n=9):
    """Per batch row: (input items, target items) as sets (candidates are all items: position = item)."""
    return [(set(inp[r][inp[r] < n].tolist()), set(targets[targets[:, 0] == r, 1].tolist())) for r in range(len(inp))]


def test_unordered_inputs_and_targets_split_each_user_at_random():
    prefixes = 0
    for seed in range(5):
        (inp, a, cand, targets, seen), seq, indptr = _batch(seed, ordered=False)
        np.testing.assert_array_equal(cand, np.arange(9))
        np.testing.assert_array_equal(a, (inp < 9).astype(np.float32))  # every input item weighs 1, no recency
        for r, (given, wanted) in enumerate(_rows(inp, targets)):
            user = 0 if given <= set(range(6)) else 1
            items = set(seq[indptr[user] : indptr[user + 1]].tolist())
            assert given and wanted and not given & wanted and given | wanted == items
            assert set(seen[seen[:, 0] == r, 1].tolist()) == given  # the inputs are masked
            prefixes += given == set(sorted(items)[: len(given)])
    assert prefixes < 5 * 8  # not the row's order: some input is not a prefix of it


def test_unordered_batches_are_reproducible_and_the_ordered_one_is_a_prefix():
    first, again = _batch(3, ordered=False)[0], _batch(3, ordered=False)[0]
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    (inp, _, _, targets, _), seq, indptr = _batch(3, ordered=True)
    for given, wanted in _rows(inp, targets):
        user = 0 if given <= set(range(6)) else 1
        row = seq[indptr[user] : indptr[user + 1]].tolist()
        assert given == set(row[: len(given)]) and wanted == set(row[len(given) :])
