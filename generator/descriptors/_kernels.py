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
#: Indices of the 13 "forward" offsets (the first non-zero component positive): each unordered pair once.
_FORWARD = np.array([n for n, o in enumerate(_OFFSETS) if tuple(o) > (0, 0, 0)], dtype=np.int64)
FWD_I = np.ascontiguousarray(OFF_I[_FORWARD])
FWD_J = np.ascontiguousarray(OFF_J[_FORWARD])
FWD_K = np.ascontiguousarray(OFF_K[_FORWARD])

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
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                v = (i * ny + j) * nz + k
                phase = lab[v]
                for o in range(FWD_I.shape[0]):
                    ii = _wrap(i + FWD_I[o], nx, px)
                    jj = _wrap(j + FWD_J[o], ny, py)
                    kk = k + FWD_K[o]
                    if ii < 0 or jj < 0 or kk < 0 or kk >= nz:
                        continue
                    u = (ii * ny + jj) * nz + kk
                    if lab[u] != phase:
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
    for v in range(n):  # roots have the smallest index of their component: seen first
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
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                v = (i * ny + j) * nz + k
                if lab[v] != phase:
                    continue
                best = 4
                for o in range(OFF_I.shape[0]):
                    c = OFF_CLASS[o]
                    if c >= best:
                        continue
                    ii = _wrap(i + OFF_I[o], nx, px)
                    jj = _wrap(j + OFF_J[o], ny, py)
                    kk = k + OFF_K[o]
                    if ii < 0 or jj < 0 or kk < 0 or kk >= nz:
                        continue
                    if lab[(ii * ny + jj) * nz + kk] == other:
                        best = c
                if best < 4:
                    out[v] = best
    return out


@numba.njit(**_JIT)
def _heap_push(heap_d, heap_v, size, d, v):
    """Push ``(d, v)`` on a binary min-heap held in two arrays (grown by doubling); returns the arrays."""
    if size == heap_d.shape[0]:
        grown_d = np.empty(2 * size, dtype=np.float32)
        grown_v = np.empty(2 * size, dtype=np.int64)
        grown_d[:size] = heap_d[:size]
        grown_v[:size] = heap_v[:size]
        heap_d = grown_d
        heap_v = grown_v
    c = size
    while c > 0:
        p = (c - 1) >> 1
        if heap_d[p] <= d:
            break
        heap_d[c] = heap_d[p]
        heap_v[c] = heap_v[p]
        c = p
    heap_d[c] = d
    heap_v[c] = v
    return heap_d, heap_v


@numba.njit(**_JIT)
def _heap_pop(heap_d, heap_v, size):
    """Remove the smallest entry of a heap of ``size`` entries; returns it."""
    d = heap_d[0]
    v = heap_v[0]
    size -= 1
    if size > 0:
        ld = heap_d[size]
        lv = heap_v[size]
        c = 0
        while True:
            ch = 2 * c + 1
            if ch >= size:
                break
            if ch + 1 < size and heap_d[ch + 1] < heap_d[ch]:
                ch += 1
            if heap_d[ch] >= ld:
                break
            heap_d[c] = heap_d[ch]
            heap_v[c] = heap_v[ch]
            c = ch
        heap_d[c] = ld
        heap_v[c] = lv
    return d, v


@numba.njit(**_JIT)
def geodesic_distances(lab, nx, ny, nz, px, py, phase, sources, source_dist, weights, cutoff, link_layer):
    """Multi-source shortest paths inside one phase (binary-heap Dijkstra, float32).

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
        Their initial distances (the weight of the edge from GraSPI's meta-vertex).
    weights : float32 array (4,)
        Edge weight per offset class (index 0 unused).
    cutoff : float
        Stop once the smallest tentative distance exceeds it; voxels farther
        away keep ``inf``.
    link_layer : int
        -1, or a z layer joined to the source electrode through GraSPI's other
        electrode meta-vertex (its 3-phase graph, where a mixed-phase path may
        link both electrodes): when the first voxel of that layer is settled
        at distance ``D``, every voxel of ``phase`` in the layer is offered
        distance ``D`` (zero-weight edges to and from the meta-vertex).

    Returns
    -------
    float32 array (n,)
        Distances; ``inf`` for voxels not reached (other phases included).
    """
    n = nx * ny * nz
    dist = np.full(n, np.inf, dtype=np.float32)
    heap_d = np.empty(max(1024, 2 * sources.shape[0]), dtype=np.float32)
    heap_v = np.empty(heap_d.shape[0], dtype=np.int64)
    size = 0
    w_off = np.empty(OFF_CLASS.shape[0], dtype=np.float32)
    for o in range(OFF_CLASS.shape[0]):
        w_off[o] = weights[OFF_CLASS[o]]
    for s in range(sources.shape[0]):
        v = sources[s]
        d = source_dist[s]
        if d < dist[v]:
            dist[v] = d
            heap_d, heap_v = _heap_push(heap_d, heap_v, size, d, v)
            size += 1
    linked = link_layer < 0
    while size > 0:
        d, v = _heap_pop(heap_d, heap_v, size)
        size -= 1
        if d > dist[v]:
            continue  # stale entry
        if d > cutoff:
            break
        k = v % nz
        t = v // nz
        j = t % ny
        i = t // ny
        if not linked and k == link_layer:
            linked = True
            for a in range(nx * ny):
                u = a * nz + link_layer
                if lab[u] == phase and d < dist[u]:
                    dist[u] = d
                    heap_d, heap_v = _heap_push(heap_d, heap_v, size, d, u)
                    size += 1
        for q in range(OFF_I.shape[0]):
            ii = _wrap(i + OFF_I[q], nx, px)
            jj = _wrap(j + OFF_J[q], ny, py)
            kk = k + OFF_K[q]
            if ii < 0 or jj < 0 or kk < 0 or kk >= nz:
                continue
            u = (ii * ny + jj) * nz + kk
            if lab[u] != phase:
                continue
            nd = np.float32(d + w_off[q])
            if nd < dist[u]:
                dist[u] = nd
                heap_d, heap_v = _heap_push(heap_d, heap_v, size, nd, u)
                size += 1
    return dist
