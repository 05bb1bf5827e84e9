"""Numba kernels on the implicit voxel graph (no edge lists are ever built).

The graph is GraSPI's: every voxel of a C-ordered ``(nx, ny, nz)`` uint8
label volume is a vertex, joined to its 26 neighbours (offsets in {-1, 0, 1}^3
minus the origin). An offset with ``c`` non-zero components has *class* ``c``
(1 face, 2 edge, 3 corner) and weight ``s * sqrt(c)``. The x and y axes may
wrap (periodic); z (the electrode axis) never does. A 2-D image is passed as
``(nx, 1, ny)``: with y not periodic, only the 8 in-plane neighbours remain.

All kernels are ``nogil`` so that :func:`generator.descriptors.compute_batch`
can run them on several threads, and ``cache=True`` so that a process loads
them compiled from ``__pycache__`` instead of compiling them again.

Distances are accumulated in float32, as GraSPI's boost Dijkstra does
(``std::vector<float>`` distances, float edge weights): with a monotone
rounded addition the Dijkstra fixpoint is unique, so these distances equal
GraSPI's bit for bit whatever the order in which ties are settled.
"""

from __future__ import annotations

import numba
import numpy as np

# The 26 neighbour offsets and their class (number of non-zero components).
_OFFSETS = np.array([(di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1) if (di, dj, dk) != (0, 0, 0)], dtype=np.int64)
OFF_I = np.ascontiguousarray(_OFFSETS[:, 0])
OFF_J = np.ascontiguousarray(_OFFSETS[:, 1])
OFF_K = np.ascontiguousarray(_OFFSETS[:, 2])
OFF_CLASS = np.abs(_OFFSETS).sum(axis=1).astype(np.int64)
N_OFFSETS = 26

_JIT = dict(cache=True, nogil=True)


@numba.njit(**_JIT)
def _wrap(a, n, periodic):
    """Coordinate ``a`` on an axis of length ``n``; -1 when it leaves a non-periodic axis."""
    if a < 0:
        return a + n if periodic else -1
    if a >= n:
        return a - n if periodic else -1
    return a


@numba.njit(**_JIT)
def _neighbours(v, nx, ny, nz, px, py, out):
    """Write the flat indices of the 26 neighbours of voxel ``v`` into ``out`` (-1 outside); return its layer k."""
    k = v % nz
    t = v // nz
    j = t % ny
    i = t // ny
    if 0 < i < nx - 1 and 0 < j < ny - 1 and 0 < k < nz - 1:  # interior: no bounds to check
        for q in range(N_OFFSETS):
            out[q] = v + (OFF_I[q] * ny + OFF_J[q]) * nz + OFF_K[q]
        return k
    for q in range(N_OFFSETS):
        ii = _wrap(i + OFF_I[q], nx, px)
        jj = _wrap(j + OFF_J[q], ny, py)
        kk = k + OFF_K[q]
        if ii < 0 or jj < 0 or kk < 0 or kk >= nz:
            out[q] = -1
        else:
            out[q] = (ii * ny + jj) * nz + kk
    return k


@numba.njit(**_JIT)
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(**_JIT)
def connected_components(lab, nx, ny, nz, px, py):
    """Same-phase 26-connected components (union-find; x / y wrap when periodic).

    Parameters
    ----------
    lab : uint8 array (nx * ny * nz,)
        Flat C-ordered labels.
    nx, ny, nz : int
        Shape.
    px, py : bool
        Whether x / y wrap.

    Returns
    -------
    comp : int32 array (nx * ny * nz,)
        Component index of every voxel, ``0 .. n_components - 1``.
    n_components : int
    """
    n = nx * ny * nz
    parent = np.arange(n, dtype=np.int32)
    nbr = np.empty(N_OFFSETS, dtype=np.int64)
    for v in range(n):
        phase = lab[v]
        _neighbours(v, nx, ny, nz, px, py, nbr)
        for q in range(N_OFFSETS):
            u = nbr[q]
            if u <= v or lab[u] != phase:  # each pair once (from its smaller index)
                continue
            ru = _find(parent, u)
            rv = _find(parent, v)
            if ru != rv:
                if ru < rv:
                    parent[rv] = ru
                else:
                    parent[ru] = rv
    comp = np.empty(n, dtype=np.int32)
    n_components = 0
    for v in range(n):  # a root is the smallest index of its component: met before the others
        r = _find(parent, v)
        if r == v:
            comp[v] = n_components
            n_components += 1
        else:
            comp[v] = comp[r]
    return comp, n_components


@numba.njit(**_JIT)
def contact_class(lab, nx, ny, nz, px, py, phase, other):
    """For every voxel of ``phase``, the smallest class of an offset to a voxel of ``other``.

    Returns
    -------
    uint8 array (nx * ny * nz,)
        1 (face), 2 (edge) or 3 (corner) contact; 0 where the voxel is not of
        ``phase`` or has no neighbour of ``other``.
    """
    n = nx * ny * nz
    out = np.zeros(n, dtype=np.uint8)
    nbr = np.empty(N_OFFSETS, dtype=np.int64)
    for v in range(n):
        if lab[v] != phase:
            continue
        _neighbours(v, nx, ny, nz, px, py, nbr)
        best = 4
        for q in range(N_OFFSETS):
            u = nbr[q]
            if u >= 0 and OFF_CLASS[q] < best and lab[u] == other:
                best = OFF_CLASS[q]
        if best < 4:
            out[v] = best
    return out


#: Ring size of the bucket queue: a relaxation lands at most ceil(2 * sqrt(3)) + 1 buckets ahead.
_N_BUCKETS = 8


@numba.njit(**_JIT)
def _bucket_insert(head, nxt, prv, where, b, v):
    slot = b & (_N_BUCKETS - 1)
    h = head[slot]
    nxt[v] = h
    prv[v] = -1
    if h >= 0:
        prv[h] = v
    head[slot] = v
    where[v] = b


@numba.njit(**_JIT)
def _bucket_remove(head, nxt, prv, where, v):
    p = prv[v]
    q = nxt[v]
    if p >= 0:
        nxt[p] = q
    else:
        head[where[v] & (_N_BUCKETS - 1)] = q
    if q >= 0:
        prv[q] = p
    where[v] = -1


@numba.njit(**_JIT)
def geodesic_distances(lab, nx, ny, nz, px, py, phase, sources, source_dist, weights, cutoff, link_layer, source_layer, max_excess):
    """Multi-source shortest paths inside one phase (exact bucket-queue Dijkstra, float32).

    The queue is Dinitz's refinement of Dial's buckets: bucket ``b`` holds the
    tentative distances in ``[b * delta, (b + 1) * delta)`` with ``delta`` half
    the shortest edge, so a voxel can never be improved by another voxel of
    its own bucket: every voxel of a bucket is final when the bucket is
    reached and the buckets are emptied in any order. The result is exactly
    Dijkstra's, in O(n) instead of O(n log n), in a ring of 8 doubly linked
    buckets threaded through three int32/int64 arrays of the volume's size.

    Parameters
    ----------
    lab : uint8 array (n,)
        Flat C-ordered labels.
    nx, ny, nz : int
    px, py : bool
        Whether x / y wrap.
    phase : int
        Paths run through voxels of this label only.
    sources : int64 array (m,)
        Flat indices of the source voxels (of ``phase``).
    source_dist : float32 array (m,)
        Their initial distances (the weight of the edge from GraSPI's
        meta-vertex), each below ``2 * weights[1]``.
    weights : float32 array (4,)
        Edge weight per offset class (index 0 unused).
    cutoff : float
        Stop once every remaining tentative distance exceeds it; voxels
        farther away keep ``inf``.
    link_layer : int
        -1, or a z layer joined to the source electrode through GraSPI's other
        electrode meta-vertex (its 3-phase graph, where a mixed-phase path may
        link both electrodes): once the nearest voxel of that layer is final
        at distance ``D``, every voxel of ``phase`` in the layer is offered
        ``D`` (zero-weight edges to and from the meta-vertex).
    source_layer : int
        The electrode layer of the sources, for ``max_excess`` (ignored when
        ``max_excess`` is infinite).
    max_excess : float
        Do not continue paths from a voxel whose excess ``d - |k -
        source_layer| * weights[1]`` (distance beyond the straight rise)
        exceeds this. The excess never decreases along a path, so every voxel
        whose own excess stays below ``max_excess`` still gets its exact
        distance; the others get an upper bound or ``inf``. Tortuosity-1
        counting needs only excesses below ``(nz - 1) / nz * s``.

    Returns
    -------
    float32 array (n,)
        Distances; ``inf`` for voxels not reached (other phases included).
    """
    n = nx * ny * nz
    dist = np.full(n, np.inf, dtype=np.float32)
    nxt = np.empty(n, dtype=np.int32)
    prv = np.empty(n, dtype=np.int32)
    where = np.full(n, -1, dtype=np.int32)
    nbr = np.empty(N_OFFSETS, dtype=np.int64)
    prune = max_excess < np.inf
    head = np.full(_N_BUCKETS, -1, dtype=np.int32)
    inv_delta = 2.0 / weights[1]
    w_off = np.empty(OFF_CLASS.shape[0], dtype=np.float32)
    for o in range(OFF_CLASS.shape[0]):
        w_off[o] = weights[OFF_CLASS[o]]
    active = 0
    b = -1
    for s in range(sources.shape[0]):
        v = sources[s]
        d = source_dist[s]
        if d < dist[v]:
            if where[v] >= 0:
                _bucket_remove(head, nxt, prv, where, v)
                active -= 1
            dist[v] = d
            bv = np.int32(np.float64(d) * inv_delta)
            _bucket_insert(head, nxt, prv, where, bv, v)
            active += 1
            if b < 0 or bv < b:
                b = bv
    linked = link_layer < 0
    while active > 0:
        slot = b & (_N_BUCKETS - 1)
        if head[slot] < 0:
            b += 1
            continue
        if b / inv_delta > cutoff:
            break
        if not linked:
            # The nearest voxel of the link layer, if this bucket holds one, is final now.
            best = np.float32(np.inf)
            v = head[slot]
            while v >= 0:
                if v % nz == link_layer and dist[v] < best:
                    best = dist[v]
                v = nxt[v]
            if best < np.inf:
                linked = True
                for a in range(nx * ny):
                    u = a * nz + link_layer
                    if lab[u] == phase and best < dist[u]:
                        if where[u] >= 0:
                            _bucket_remove(head, nxt, prv, where, u)
                            active -= 1
                        dist[u] = best
                        _bucket_insert(head, nxt, prv, where, b, u)
                        active += 1
        while head[slot] >= 0:
            v = head[slot]
            _bucket_remove(head, nxt, prv, where, v)
            active -= 1
            d = dist[v]
            k = _neighbours(v, nx, ny, nz, px, py, nbr)
            if prune and d - abs(k - source_layer) * weights[1] > max_excess:
                continue
            for q in range(N_OFFSETS):
                u = nbr[q]
                if u < 0 or lab[u] != phase:
                    continue
                nd = np.float32(d + w_off[q])
                if nd < dist[u]:
                    if where[u] >= 0:
                        _bucket_remove(head, nxt, prv, where, u)
                        active -= 1
                    dist[u] = nd
                    _bucket_insert(head, nxt, prv, where, np.int32(np.float64(nd) * inv_delta), u)
                    active += 1
        b += 1
    return dist
