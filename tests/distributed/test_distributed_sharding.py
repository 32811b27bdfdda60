"""Sharding (no MPI needed): K loaders with shards serve one loader's batches exactly once."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd.data.loader import DataLoader
from minissd.distributed import shard, shard_bounds


class Indices:
    """A dataset whose sample ``i`` is a 1-pixel image holding ``i`` (and no objects)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (np.full((1, 1, 1), i, dtype=np.float32), np.zeros((0, 4), np.float32),
                np.zeros(0, np.int64))


@given(n=st.integers(0, 50), size=st.integers(1, 9), data=st.data())
def test_shard_is_array_split(n, size, data):
    rank = data.draw(st.integers(0, size - 1))
    items = np.arange(n) * 7
    np.testing.assert_array_equal(shard(items, rank, size), np.array_split(items, size)[rank])
    start, stop = shard_bounds(n, rank, size)
    assert stop - start in (n // size, n // size + 1)


@given(n=st.integers(1, 40), batch=st.integers(1, 12), processes=st.integers(1, 6),
       drop_last=st.booleans(), seed=st.integers(0, 3), shuffle=st.booleans())
def test_shards_cover_every_batch_once_in_the_one_process_order(n, batch, processes, drop_last,
                                                                 seed, shuffle):
    def loader(rank=0, size=1):
        return DataLoader(Indices(n), batch, shuffle=shuffle, seed=seed, drop_last=drop_last,
                          shard_rank=rank, num_shards=size)

    try:
        one = loader()
    except ValueError:  # no batch at all (n < batch with drop_last)
        return
    last = n - (len(one) - 1) * batch  # the size of an epoch's last batch
    if min(batch, last) < processes:  # a process would get no image: refused up front
        with pytest.raises(ValueError, match="at least one sample per shard"):
            loader(0, processes)
        return
    shards = [loader(rank, processes) for rank in range(processes)]
    for epoch in (0, 1):
        whole = list(one.epoch(epoch))
        parts = [list(s.epoch(epoch)) for s in shards]
        assert all(len(p) == len(whole) == len(one) for p in parts)
        for k, batch_k in enumerate(whole):
            pieces = [p[k].indices for p in parts]
            # disjoint, contiguous pieces that cover the batch in its order, sizes within 1
            np.testing.assert_array_equal(np.concatenate(pieces), batch_k.indices)
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1 and min(map(len, pieces))
            for p, piece in zip(parts, pieces):  # each image is the one-process loader's
                np.testing.assert_array_equal(p[k].images[:, 0, 0, 0], piece)
        served = np.concatenate([b.indices for b in whole])
        assert len(set(served.tolist())) == len(served)  # every image at most once an epoch
        if not drop_last:
            assert sorted(served.tolist()) == list(range(n))  # every image exactly once
        else:
            assert len(served) == len(one) * batch


def test_bad_shard_arguments_are_named():
    with pytest.raises(ValueError, match="rank < size"):
        DataLoader(Indices(4), 2, shard_rank=2, num_shards=2)
    with pytest.raises(ValueError, match="num_shards=3: every batch must hold at least one"):
        DataLoader(Indices(4), 2, num_shards=3)
