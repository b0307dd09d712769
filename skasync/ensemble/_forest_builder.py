"""Chunked growing of a forest: the workers, their scheduling, and the packing.

Structure:

- :func:`grow_forest`: runs the workers of all chunks and packs their trees
  into one :class:`~skasync.ensemble._tree.PackedForest` as they arrive,
  summing the out-of-bag predictions when the workers return them.
- :func:`grow_sieve_chunk`, :func:`grow_block_chunk`: the workers. One call
  grows a chunk of trees: one batch of bootstrap draws (AR-sieve series or
  in-bag multisets of rows) from the chunk's own seed and one compiled call,
  so the Python cost is paid per chunk, not per tree.
- :func:`tree_chunks`: the split of the trees into chunks, by the data size only.
- :func:`_run_chunks`: the workers on threads (``concurrent.futures``) or on
  another joblib backend.
- :class:`_ForestBuilder`: appends each chunk's packed trees to flat arrays.

The chunks depend only on the data size and results are taken in submission
order, so the forest does not depend on ``n_jobs`` or the backend.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
from joblib.parallel import ThreadingBackend, effective_n_jobs, get_active_backend
from sklearn.utils.parallel import Parallel, delayed

from ..bootstrap import block_bootstrap_indices, simulate_ar_sieve
from ._tree import (
    PackedForest,
    Tree,
    accumulate_oob,
    grow_trees,
    grow_trees_on_series,
    walk_arrays,
)

__all__ = ["grow_block_chunk", "grow_forest", "grow_sieve_chunk", "tree_chunks"]


def grow_sieve_chunk(mean, coef, resid, n_rows, burn_in, draw_seed, seeds, tree_kw):
    """Grow one tree per seed, each on its own synthetic AR-sieve series.

    Only the sieve (mean, coefficients, residuals) is shipped, never the data.
    """
    spec = SimpleNamespace(order=coef.shape[0], coef=coef, mean=mean, resid=resid)
    series = simulate_ar_sieve(
        spec,
        n_rows,
        n_start_values=coef.shape[0],
        burn_in=burn_in,
        random_state=np.random.default_rng(draw_seed),
        n_series=seeds.shape[0],
    )
    return grow_trees_on_series(series, coef.shape[0], seeds=seeds, **tree_kw), None


def grow_block_chunk(binned, y, X_oob, boot_kw, draw_seed, seeds, tree_kw):
    """Grow one tree per seed on a rangerts-style in-bag multiset of rows."""
    n = y.shape[0]
    idx = block_bootstrap_indices(
        n,
        random_state=np.random.default_rng(draw_seed),
        n_draws=seeds.shape[0],
        **boot_kw,
    )
    packed = grow_trees(binned, y, idx, seeds=seeds, **tree_kw)
    if X_oob is None:
        return packed, None
    oob_sum = np.zeros(n)
    oob_cnt = np.zeros(n, dtype=np.int64)
    accumulate_oob(
        *walk_arrays(packed),
        X_oob,
        idx,
        oob_sum,
        oob_cnt,
    )
    return packed, (oob_sum, oob_cnt)


def tree_chunks(n_trees, n_rows):
    """Split ``range(n_trees)`` into the chunks of trees grown per worker call.

    ``n_rows`` is the number of rows each tree draws (at least the training
    rows).

    Large chunks amortise the Python cost of a call (~0.1 ms); the cap of about
    2.5 M in-bag rows per chunk bounds the memory of its draws and trees in
    flight (~2 MB per tree at n = 100 000), and a few chunks per job balance
    the load. The split depends only on the data size, never on ``n_jobs``.
    """
    size = max(1, min(50, 2_500_000 // max(n_rows, 1)))
    return [slice(i, min(i + size, n_trees)) for i in range(0, n_trees, size)]


def _run_chunks(func, args_list, n_jobs, verbose):
    """Yield ``func(*args)`` for each ``args``, in order, on the joblib backend.

    The default threads backend runs on a ``concurrent.futures`` pool: joblib's
    own thread pool costs ~11 ms per call (its result polling), a fifth of a
    500-tree fit at n = 395. Other backends (``joblib.parallel_config``, e.g.
    dask or loky) and ``verbose > 0`` (joblib's progress messages) go through
    :class:`~sklearn.utils.parallel.Parallel`.
    """
    backend, _ = get_active_backend(prefer="threads")
    n_jobs = min(effective_n_jobs(n_jobs), len(args_list))
    if type(backend) is ThreadingBackend and not verbose:
        if n_jobs == 1:
            yield from (func(*args) for args in args_list)
            return
        with ThreadPoolExecutor(n_jobs) as pool:
            yield from pool.map(lambda args: func(*args), args_list)
        return
    yield from Parallel(
        n_jobs=n_jobs, verbose=verbose, prefer="threads", return_as="generator"
    )(delayed(func)(*args) for args in args_list)


class _ForestBuilder:
    """Append chunks of packed trees to flat node arrays as they arrive.

    Copying each chunk into preallocated arrays and dropping it keeps the peak
    memory near one forest. Packing all trees at the end would need two (and
    the freed chunk arrays stay in the heap), e.g. ~2.3 GB instead of ~1.2 GB
    for n = 100 000 rows.
    """

    def __init__(self, n_trees):
        self.n_trees = n_trees
        self.arrays = None
        self.n_nodes = 0
        self.offsets = [np.zeros(1, dtype=np.int64)]

    def add(self, chunk):
        k = chunk.feature.shape[0]
        if self.arrays is None:
            # Trees of one forest have similar sizes; growth is rare.
            n_chunk = chunk.node_offsets.shape[0] - 1
            cap = int(1.1 * k * self.n_trees / n_chunk) + 64
            self.arrays = {
                name: np.empty(cap, dtype=getattr(chunk, name).dtype)
                for name in Tree._fields
            }
        cap = self.arrays["feature"].shape[0]
        if self.n_nodes + k > cap:
            new_cap = max(int(1.25 * cap), self.n_nodes + k)
            for arr in self.arrays.values():
                arr.resize(new_cap, refcheck=False)  # realloc, no second copy
        for name, arr in self.arrays.items():
            arr[self.n_nodes : self.n_nodes + k] = getattr(chunk, name)
        self.offsets.append(chunk.node_offsets[1:] + self.n_nodes)
        self.n_nodes += k

    def finish(self):
        for arr in self.arrays.values():
            arr.resize(self.n_nodes, refcheck=False)
        return PackedForest(**self.arrays, node_offsets=np.concatenate(self.offsets))


def grow_forest(func, args_list, n_trees, n_jobs, verbose):
    """Grow every chunk of a forest and pack the trees into one forest.

    Parameters
    ----------
    func : callable
        The worker, :func:`grow_sieve_chunk` or :func:`grow_block_chunk`.
    args_list : list of tuple
        The worker's arguments, one tuple per chunk, in tree order.
    n_trees : int
        Number of trees of all the chunks together.
    n_jobs : int or None
        Number of joblib jobs.
    verbose : int
        Verbosity of joblib's ``Parallel``.

    Returns
    -------
    forest : PackedForest
        The trees in chunk order.
    oob_sum, oob_cnt : ndarray of shape (n_rows,) or 0
        Sums and counts of the out-of-bag predictions of each row; 0 when the
        workers return none.
    """
    # Results arrive in submission order, so the forest does not depend on
    # the backend or n_jobs; the generator lets us pack chunk by chunk.
    # Threads by default: the kernels release the GIL, and a chunk's
    # arguments are shared, not pickled.
    builder = _ForestBuilder(n_trees)
    oob_sum = oob_cnt = 0
    for chunk_trees, chunk_oob in _run_chunks(func, args_list, n_jobs, verbose):
        builder.add(chunk_trees)
        del chunk_trees
        if chunk_oob is not None:
            oob_sum = oob_sum + chunk_oob[0]
            oob_cnt = oob_cnt + chunk_oob[1]
    return builder.finish(), oob_sum, oob_cnt
