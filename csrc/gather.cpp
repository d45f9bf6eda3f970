// Row gather over memory-mapped, row-chunked feature matrices (graphstore/features/array.py).
// gather_rows(): out[i] = chunk[ids[i] / chunk_rows][ids[i] % chunk_rows] in one pass over ids
//   (gather_rows_pread(): the same through pread() on open chunk files, mapping nothing),
//   optionally converting float16 -> float32 on the way, OpenMP over rows, GIL released.
//   Page faults of a cold gather are taken by all threads at once, and no sort or scatter
//   copy is needed because each row's source address is computed directly.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "parallel.h"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GS_HAVE_F16C_DISPATCH 1
#endif

namespace py = pybind11;

namespace {

// Fewer output bytes than this are copied on the calling thread (a fork/join costs more).
constexpr int64_t kParallelMinBytes = 1 << 18;

// Exact IEEE half -> single, including subnormals, infinities and NaN payloads.
inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1Fu) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    int shift = 0;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      ++shift;
    }
    man &= 0x3FFu;
    bits = sign | ((113u - shift) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void convert_row_portable(const uint16_t *src, float *dst, int64_t dim) {
  for (int64_t j = 0; j < dim; ++j) dst[j] = half_to_float(src[j]);
}

#ifdef GS_HAVE_F16C_DISPATCH
__attribute__((target("avx,f16c"))) void convert_row_f16c(const uint16_t *src, float *dst, int64_t dim) {
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + j));
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(h));
  }
  for (; j < dim; ++j) dst[j] = half_to_float(src[j]);
}
#endif

using ConvertRow = void (*)(const uint16_t *, float *, int64_t);

ConvertRow pick_converter() {
#ifdef GS_HAVE_F16C_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) return convert_row_f16c;
#endif
  return convert_row_portable;
}

const ConvertRow kConvertRow = pick_converter();

// What both gathers check and share: the output's layout and whether to fork threads.
struct Plan {
  int64_t n, row_bytes, out_row_bytes;
  const int64_t *id;
  char *dst;
  bool parallel;
};

Plan plan_gather(int64_t n_chunks, int64_t chunk_rows, int64_t dim, int64_t itemsize,
                 const py::array_t<int64_t, py::array::c_style> &ids, py::array &out, int convert,
                 int num_threads) {
  if (chunk_rows <= 0 || dim <= 0) throw std::invalid_argument("chunk_rows and dim must be positive");
  if (convert == 1 && itemsize != 2) throw std::invalid_argument("float16 conversion needs itemsize 2");
  Plan p;
  p.n = ids.shape(0);
  const int64_t out_item = convert == 1 ? 4 : itemsize;
  if (!(out.flags() & py::array::c_style) || !out.writeable() || out.ndim() != 2 || out.shape(0) != p.n ||
      out.shape(1) != dim || out.itemsize() != out_item)
    throw std::invalid_argument("out must be a writable C-contiguous [len(ids), dim] array of the output dtype");
  p.id = ids.data();
  p.dst = static_cast<char *>(out.mutable_data());
  p.row_bytes = dim * itemsize;
  p.out_row_bytes = dim * out_item;
  const int64_t total = n_chunks * chunk_rows;
  for (int64_t i = 0; i < p.n; ++i)
    if (p.id[i] < 0 || p.id[i] >= total) throw std::out_of_range("row id outside the array's chunks");
  p.parallel = p.n * p.out_row_bytes >= kParallelMinBytes && num_threads > 1 && !gs::forked_child();
  return p;
}

// bases[c]: address of chunk c's first row (each chunk holds chunk_rows rows of row_bytes bytes).
// convert: 0 = copy rows as stored; 1 = float16 rows into a float32 output.
void gather_rows(py::array_t<uint64_t, py::array::c_style> bases, int64_t chunk_rows, int64_t dim,
                 int64_t itemsize, py::array_t<int64_t, py::array::c_style> ids, py::array out,
                 int convert, int num_threads) {
  const Plan p = plan_gather(bases.shape(0), chunk_rows, dim, itemsize, ids, out, convert, num_threads);
  const uint64_t *base = bases.data();
  py::gil_scoped_release release;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (p.parallel)
  for (int64_t i = 0; i < p.n; ++i) {
    const int64_t c = p.id[i] / chunk_rows;
    const char *src = reinterpret_cast<const char *>(base[c]) + (p.id[i] - c * chunk_rows) * p.row_bytes;
    char *row_out = p.dst + i * p.out_row_bytes;
    if (convert == 1)
      kConvertRow(reinterpret_cast<const uint16_t *>(src), reinterpret_cast<float *>(row_out), dim);
    else
      std::memcpy(row_out, src, p.row_bytes);
  }
}

// The same gather through pread(): no pages are mapped into the process, so its RSS does not grow
// with the features read (the OS page cache still caches them). fds[c] is chunk c's open file, or -1
// for an absent chunk, whose rows read as fill_row (one row in the stored dtype). Ids that follow each
// other (id, id + 1, ... within a chunk, as a video's comments do) are read by one pread.
void gather_rows_pread(py::array_t<int64_t, py::array::c_style> fds, int64_t chunk_rows, int64_t dim,
                       int64_t itemsize, py::array_t<int64_t, py::array::c_style> ids, py::array out,
                       int convert, int num_threads, py::array_t<uint8_t, py::array::c_style> fill_row) {
  const Plan p = plan_gather(fds.shape(0), chunk_rows, dim, itemsize, ids, out, convert, num_threads);
  if (fill_row.size() != p.row_bytes) throw std::invalid_argument("fill_row must hold one stored row");
  const int64_t *fd = fds.data();
  const char *fill = reinterpret_cast<const char *>(fill_row.data());
  constexpr int64_t kMaxRunRows = 64;
  std::vector<int64_t> run_start;  // runs of consecutive ids in one chunk, at most kMaxRunRows long
  for (int64_t i = 0; i < p.n; ++i) {
    const bool continues = i > 0 && p.id[i] == p.id[i - 1] + 1 && p.id[i] / chunk_rows == p.id[i - 1] / chunk_rows &&
                           i - run_start.back() < kMaxRunRows;
    if (!continues) run_start.push_back(i);
  }
  run_start.push_back(p.n);
  const int64_t n_runs = static_cast<int64_t>(run_start.size()) - 1;
  std::atomic<int> failure{0};  // errno of the first failed read (EIO for a short read)
  {
    py::gil_scoped_release release;
    // syscalls, not copies, dominate: worth threads from a few hundred reads
    const bool parallel = (p.parallel || n_runs >= 256) && num_threads > 1 && !gs::forked_child();
#pragma omp parallel num_threads(num_threads) if (parallel)
    {
      std::vector<char> scratch(convert == 1 ? kMaxRunRows * p.row_bytes : 0);
#pragma omp for schedule(dynamic, 32)
      for (int64_t r = 0; r < n_runs; ++r) {
        if (failure.load(std::memory_order_relaxed)) continue;
        const int64_t i0 = run_start[r], rows = run_start[r + 1] - i0;
        const int64_t c = p.id[i0] / chunk_rows;
        char *run_out = p.dst + i0 * p.out_row_bytes;
        char *target = convert == 1 ? scratch.data() : run_out;
        const int64_t want = rows * p.row_bytes;
        if (fd[c] < 0) {
          for (int64_t k = 0; k < rows; ++k) std::memcpy(target + k * p.row_bytes, fill, p.row_bytes);
        } else {
          const off_t offset = static_cast<off_t>((p.id[i0] - c * chunk_rows) * p.row_bytes);
          int64_t got = 0;
          while (got < want) {
            const ssize_t n = pread(static_cast<int>(fd[c]), target + got, want - got, offset + got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
              int expected = 0;
              failure.compare_exchange_strong(expected, n < 0 ? errno : EIO);
              break;
            }
            got += n;
          }
        }
        if (convert == 1)
          kConvertRow(reinterpret_cast<const uint16_t *>(scratch.data()), reinterpret_cast<float *>(run_out), rows * dim);
      }
    }
  }
  if (failure.load()) throw std::runtime_error(std::string("reading a feature chunk failed: ") + std::strerror(failure.load()));
}

// The float16 -> float32 converter of a contiguous buffer (tested against NumPy's).
void half_to_float32(py::array_t<uint16_t, py::array::c_style> src, py::array_t<float, py::array::c_style> dst,
                     bool portable) {
  if (src.size() != dst.size()) throw std::invalid_argument("src and dst sizes differ");
  (portable ? convert_row_portable : kConvertRow)(src.data(), dst.mutable_data(), src.size());
}

}  // namespace

PYBIND11_MODULE(_gather_cpp, m) {
  gs::install_fork_guard();
  m.doc() = "graphstore row-gather kernel over memory-mapped feature chunks (C++/OpenMP)";
  m.def("gather_rows", &gather_rows, "out[i] = row ids[i] of the chunked matrix at bases", py::arg("bases"),
        py::arg("chunk_rows"), py::arg("dim"), py::arg("itemsize"), py::arg("ids"), py::arg("out"),
        py::arg("convert"), py::arg("num_threads"));
  m.def("gather_rows_pread", &gather_rows_pread, "gather_rows through pread() on open chunk files",
        py::arg("fds"), py::arg("chunk_rows"), py::arg("dim"), py::arg("itemsize"), py::arg("ids"), py::arg("out"),
        py::arg("convert"), py::arg("num_threads"), py::arg("fill_row"));
  m.def("half_to_float32", &half_to_float32, "float16 bits -> float32", py::arg("src"), py::arg("dst"),
        py::arg("portable") = false);
  m.def("max_threads", &gs::max_threads, "OpenMP's default thread count");
#ifdef GS_HAVE_F16C_DISPATCH
  m.attr("f16c") = kConvertRow == convert_row_f16c;
#else
  m.attr("f16c") = false;
#endif
}
