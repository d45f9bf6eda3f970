// libgomp's thread pool does not survive fork(): a child that opens a parallel region after its
// parent did waits forever on worker threads that were not copied. As PyTorch does, a process
// forked after this module was loaded (a DataLoader worker, a multiprocessing 'fork' child) runs
// the kernels on its calling thread only. 'spawn' children load the module afresh and keep threads.
#pragma once
#include <pthread.h>

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

}  // namespace gs
