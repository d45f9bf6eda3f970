// Neighbour sampling kernels over the graphstore topology (see graphstore/sampler/rng.py for
// the RNG and draw algorithm; this file implements the same arithmetic bit for bit).
// draw():    serial count pass + prefix sum, then the fill pass, OpenMP over frontier tails when
//            it draws at least kParallelMinDraws edges (GIL released throughout).
// relabel(): sequential first-seen relabel through a dense int32 node map, GIL released; all or
//            nothing: on an out-of-range id it undoes its own additions and returns n = -1.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "parallel.h"

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

namespace {

constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL;
constexpr uint64_t MIX2 = 0x94D049BB133111EBULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * MIX1;
  z = (z ^ (z >> 27)) * MIX2;
  return z ^ (z >> 31);
}

// Uniform integer in [0, n), 1 <= n < 2^32: Lemire multiply-shift with exact rejection.
inline int64_t bounded(uint64_t key, uint64_t &ctr, uint64_t n) {
  for (;;) {
    ++ctr;
    uint64_t x = mix64(key + ctr * GOLDEN) >> 32;
    uint64_t m = x * n;
    uint64_t low = m & 0xFFFFFFFFULL;
    if (low < n && low < ((1ULL << 32) - n) % n) continue;
    return static_cast<int64_t>(m >> 32);
  }
}

// Fewer draws than this run on the calling thread (a fork/join costs more than they take).
constexpr int64_t kParallelMinDraws = 1 << 16;
// Floyd draws of at most this many use a linear membership scan; larger ones a hash set.
constexpr int64_t kSmallK = 8;

enum Kind { ALIGNED = 0, RANGE = 1, CSC = 2, BUCKET = 3 };

struct Rel {
  int kind;
  bool identity;
  const int32_t *head_index;
  const int64_t *indptr;
  const int32_t *indices;
  const int32_t *members;
  const int32_t *lo;
  const int32_t *hi;

  inline void span(int64_t v, int64_t &start, int64_t &deg) const {
    if (kind == ALIGNED) {
      start = 0;
      deg = 1;
    } else if (kind == RANGE || kind == CSC) {
      start = indptr[v];
      deg = indptr[v + 1] - indptr[v];
    } else {
      start = lo[v];
      deg = static_cast<int64_t>(hi[v]) - lo[v];
    }
  }
  inline int64_t head(int64_t v, int64_t start, int64_t off) const {
    switch (kind) {
      case ALIGNED: return identity ? v : static_cast<int64_t>(head_index[v]);
      case RANGE: return start + off;
      case CSC: return indices[start + off];
      default: return identity ? start + off : static_cast<int64_t>(members[start + off]);
    }
  }
};

inline int64_t count_of(int64_t d, int64_t k, bool replace) {
  if (d <= 0 || k == 0) return 0;
  if (k < 0) return d;
  if (replace) return k;
  return k < d ? k : d;
}

// Offsets of the drawn in-neighbours of one tail, written to out[0:c].
inline void draw_offsets(int64_t *out, uint64_t key, int64_t d, int64_t k, bool replace) {
  if (k < 0 || (!replace && k >= d)) {
    for (int64_t j = 0; j < d; ++j) out[j] = j;
    return;
  }
  uint64_t ctr = 0;
  if (replace) {
    for (int64_t j = 0; j < k; ++j) out[j] = bounded(key, ctr, static_cast<uint64_t>(d));
  } else if (2 * k > d) {  // dense: selection sampling (algorithm S), ascending
    int64_t m = 0;
    for (int64_t t = 0; t < d; ++t) {
      if (bounded(key, ctr, static_cast<uint64_t>(d - t)) < k - m) {
        out[m++] = t;
        if (m == k) break;
      }
    }
  } else if (k <= kSmallK) {  // sparse, small k: Floyd's algorithm, linear membership test
    int64_t m = 0;
    for (int64_t j = d - k; j < d; ++j) {
      int64_t r = bounded(key, ctr, static_cast<uint64_t>(j + 1));
      bool found = false;
      for (int64_t q = 0; q < m; ++q) {
        if (out[q] == r) {
          found = true;
          break;
        }
      }
      out[m++] = found ? j : r;
    }
  } else {  // sparse: Floyd's algorithm with an open-addressing set (same output, O(k) work)
    size_t cap = 16;
    while (cap < static_cast<size_t>(2 * k)) cap <<= 1;
    thread_local std::vector<int64_t> table;
    table.assign(cap, -1);
    const size_t mask = cap - 1;
    int64_t m = 0;
    for (int64_t j = d - k; j < d; ++j) {
      int64_t r = bounded(key, ctr, static_cast<uint64_t>(j + 1));
      size_t slot = static_cast<size_t>(mix64(static_cast<uint64_t>(r))) & mask;
      bool found = false;
      while (table[slot] >= 0) {
        if (table[slot] == r) {
          found = true;
          break;
        }
        slot = (slot + 1) & mask;
      }
      const int64_t pick = found ? j : r;  // j was never drawn before (all earlier picks are < j)
      if (found) {
        slot = static_cast<size_t>(mix64(static_cast<uint64_t>(j))) & mask;
        while (table[slot] >= 0) slot = (slot + 1) & mask;
      }
      table[slot] = pick;
      out[m++] = pick;
    }
  }
}

template <typename T>
const T *ptr_or_null(const py::array_t<T, py::array::c_style> &a) {
  return a.size() ? a.data() : nullptr;
}

py::tuple draw(int kind, bool identity,
               py::array_t<int32_t, py::array::c_style> head_index,
               py::array_t<int64_t, py::array::c_style> indptr,
               py::array_t<int32_t, py::array::c_style> indices,
               py::array_t<int32_t, py::array::c_style> members,
               py::array_t<int32_t, py::array::c_style> lo,
               py::array_t<int32_t, py::array::c_style> hi,
               py::array_t<int64_t, py::array::c_style> frontier, int64_t tail0, int64_t k,
               bool replace, uint64_t rel_key, int num_threads) {
  if (kind < 0 || kind > 3) throw std::invalid_argument("unknown relation kind code");
  Rel rel{kind, identity, ptr_or_null(head_index), ptr_or_null(indptr), ptr_or_null(indices),
          ptr_or_null(members), ptr_or_null(lo), ptr_or_null(hi)};
  const int64_t n = frontier.size();
  const int64_t *fr = frontier.data();
  if (num_threads < 1) num_threads = 1;
  std::vector<int64_t> offsets(n + 1, 0);
  {
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) {  // serial: cheap, and no fork/join on a busy machine
      int64_t start, d;
      rel.span(fr[i], start, d);
      offsets[i + 1] = offsets[i] + count_of(d, k, replace);
    }
  }
  const int64_t total = offsets[n];
  py::array_t<int64_t> heads(total), cols(total);
  int64_t *hp = heads.mutable_data();
  int64_t *cp = cols.mutable_data();
  {
    py::gil_scoped_release release;
    // A parallel region costs a fork/join; take it only when there is enough to draw.
    const bool parallel = num_threads > 1 && total >= kParallelMinDraws && !gs::forked_child();
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 64) if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t o = offsets[i], c = offsets[i + 1] - o;
      if (c == 0) continue;
      const int64_t v = fr[i];
      int64_t start, d;
      rel.span(v, start, d);
      draw_offsets(hp + o, mix64(rel_key ^ static_cast<uint64_t>(v)), d, k, replace);
      for (int64_t j = 0; j < c; ++j) {
        hp[o + j] = rel.head(v, start, hp[o + j]);
        cp[o + j] = tail0 + i;
      }
    }
  }
  return py::make_tuple(heads, cols);
}

py::tuple relabel(py::array_t<int64_t, py::array::c_style> heads,
                  py::array_t<int32_t, py::array::c_style> node_map,
                  py::array_t<int64_t, py::array::c_style> nodes, int64_t n) {
  const int64_t m = heads.size();
  if (nodes.size() < n + m) throw std::invalid_argument("relabel: node buffer too small");
  const int64_t *hp = heads.data();
  int32_t *mp = node_map.mutable_data();
  int64_t *np_ = nodes.mutable_data();
  const int64_t map_size = node_map.size();
  py::array_t<int64_t> rows(m);
  int64_t *rp = rows.mutable_data();
  const int64_t n0 = n;
  bool bad = false;
  {
    py::gil_scoped_release release;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t g = hp[j];
      if (g < 0 || g >= map_size) {
        bad = true;
        break;
      }
      int32_t loc = mp[g];
      if (loc < 0) {
        loc = static_cast<int32_t>(n);
        mp[g] = loc;
        np_[n++] = g;
      }
      rp[j] = loc;
    }
    // All or nothing: forget the nodes this call added, so the map is as the caller left it.
    if (bad)
      for (int64_t i = n0; i < n; ++i) mp[np_[i]] = -1;
  }
  if (bad) return py::make_tuple(rows, static_cast<int64_t>(-1));  // the caller names the bad id
  return py::make_tuple(rows, n);
}

}  // namespace

PYBIND11_MODULE(_sampler_cpp, m) {
  gs::install_fork_guard();
  m.doc() = "graphstore neighbour sampling kernels (C++/OpenMP)";
  m.def("draw", &draw, "Heads and local tail ids of one relation over a frontier",
        py::arg("kind"), py::arg("identity"), py::arg("head_index"), py::arg("indptr"),
        py::arg("indices"), py::arg("members"), py::arg("lo"), py::arg("hi"), py::arg("frontier"),
        py::arg("tail0"), py::arg("k"), py::arg("replace"), py::arg("rel_key"),
        py::arg("num_threads"));
  m.def("relabel", &relabel, "First-seen relabel through a dense node map", py::arg("heads"),
        py::arg("node_map"), py::arg("nodes"), py::arg("n"));
  m.def("max_threads", &gs::max_threads, "OpenMP's default thread count");
  m.attr("parallel_min_draws") = kParallelMinDraws;
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
