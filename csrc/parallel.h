// Shared by the OpenMP kernels: the default thread count, and a fork guard.
// libgomp's thread pool does not survive fork(): a child that opens a parallel region after its
// parent did waits forever on worker threads that were not copied. As PyTorch does, a process
// forked after this module was loaded (a DataLoader worker, a multiprocessing 'fork' child) runs
// the kernels on its calling thread only. 'spawn' children load the module afresh and keep threads.
#pragma once
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace gs {

inline bool &forked_child() {
  static bool flag = false;
  return flag;
}

inline void install_fork_guard() {
  static bool installed = false;
  if (!installed) {
    pthread_atfork(nullptr, nullptr, [] { forked_child() = true; });
    installed = true;
  }
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace gs
