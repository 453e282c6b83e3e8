// cuda_host_emulation.hpp - run gpulogreg's CUDA kernels on the host, for tests.
//
// There is no GPU on the development and CI machines, so the tests compile
// kernels/gpulogreg_kernels.cu with a host C++20 compiler after this header.
// Each CUDA thread of a block runs as a fiber (its own stack, made once with
// makecontext; switched with _setjmp/_longjmp) on one OS thread;
// __syncthreads() yields to a scheduler that runs every live thread of the
// block up to the barrier, in thread order, before any passes it -- exactly a
// barrier's guarantee, deterministically. __shared__ variables are statics
// (one block runs at a time), and threadIdx / blockIdx / blockDim / gridDim
// are emulated. Kernel logic (indexing, grid-stride loops, block reductions,
// the layout of the partial sums, argument order and types) is thereby
// executed and compared with NumPy; what cannot be checked here is
// device-only behaviour (timing, coalescing, warp scheduling).
//
// A missing __syncthreads() shows up deterministically: within a phase the
// threads run one after another, so a thread reading a value that another
// thread writes in the same phase sees the stale value.
//
// Restrictions the kernels must respect to run here (they do; keep it so):
// no warp intrinsics, no atomics, no dynamic shared memory, one-dimensional
// grids and blocks, small stack use (each fiber has FIBER_STACK bytes).

#ifndef GPULOGREG_CUDA_HOST_EMULATION_HPP
#define GPULOGREG_CUDA_HOST_EMULATION_HPP

#include <ucontext.h>

#include <csetjmp>
#include <cstddef>
#include <cstdlib>
#include <functional>

struct dim3 {
  unsigned x, y, z;
};

namespace emu {

constexpr unsigned MAX_THREADS = 1024;
constexpr std::size_t FIBER_STACK = 64 * 1024;

inline dim3 thread_idx{0, 0, 0};
inline dim3 block_idx{0, 0, 0};
inline dim3 block_dim{1, 1, 1};
inline dim3 grid_dim{1, 1, 1};

// Fiber t is created once per process (makecontext gives it its own stack)
// and runs the current kernel body in a loop, parking between runs. Switches
// use _setjmp/_longjmp, which unlike swapcontext/setcontext make no system
// call, so a block costs no syscalls at all.
struct Fiber {
  ucontext_t context;
  std::jmp_buf jump;
  bool created;
  bool started;
  bool done;
};

inline std::jmp_buf scheduler;
inline Fiber fibers[MAX_THREADS];
inline char* stacks = nullptr;  // MAX_THREADS * FIBER_STACK bytes, touched only as used
inline unsigned current = 0;
inline std::function<void()>* body = nullptr;

// __syncthreads(): park the current thread and go back to the scheduler.
inline void yield_to_scheduler() {
  if (_setjmp(fibers[current].jump) == 0) {
    _longjmp(scheduler, 1);
  }
}

inline void fiber_main() {
  for (;;) {  // one iteration per (block, launch) this thread takes part in
    (*body)();
    fibers[current].done = true;
    yield_to_scheduler();
  }
}

[[gnu::noinline]] inline void create_fiber(unsigned t) {
  if (stacks == nullptr) {
    stacks = static_cast<char*>(std::malloc(MAX_THREADS * FIBER_STACK));
    if (stacks == nullptr) std::abort();
  }
  Fiber& fiber = fibers[t];
  if (getcontext(&fiber.context) != 0) std::abort();
  fiber.context.uc_stack.ss_sp = stacks + static_cast<std::size_t>(t) * FIBER_STACK;
  fiber.context.uc_stack.ss_size = FIBER_STACK;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, fiber_main, 0);
  fiber.created = true;
  fiber.started = false;
}

// Run thread t until its next barrier or the end of the kernel.
[[gnu::noinline]] inline void run_fiber(unsigned t) {
  current = t;
  thread_idx = dim3{t, 0, 0};
  if (_setjmp(scheduler) == 0) {
    Fiber& fiber = fibers[t];
    if (!fiber.started) {
      fiber.started = true;
      setcontext(&fiber.context);  // does not return
      std::abort();
    }
    _longjmp(fiber.jump, 1);
  }
}

// Run kernel<<<grid, block>>>(args...): blocks in turn; within a block, rounds
// in which every live thread runs to its next barrier, in thread order. The
// parameter pack is deduced from the kernel and from the arguments alike, so a
// caller whose argument types differ from the kernel's does not compile.
template <typename... P>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, P... args) {
  if (block == 0 || block > MAX_THREADS) std::abort();
  grid_dim = dim3{grid, 1, 1};
  block_dim = dim3{block, 1, 1};
  std::function<void()> run = [&] { kernel(args...); };
  body = &run;
  for (unsigned t = 0; t < block; ++t) {
    if (!fibers[t].created) create_fiber(t);
  }
  for (unsigned b = 0; b < grid; ++b) {
    block_idx = dim3{b, 0, 0};
    for (unsigned t = 0; t < block; ++t) {
      fibers[t].done = false;
    }
    bool live = true;
    while (live) {
      live = false;
      for (unsigned t = 0; t < block; ++t) {
        if (!fibers[t].done) {
          run_fiber(t);
          live = live || !fibers[t].done;
        }
      }
    }
  }
  body = nullptr;
}

}  // namespace emu

#define threadIdx (::emu::thread_idx)
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

inline void __syncthreads() { ::emu::yield_to_scheduler(); }

#endif  // GPULOGREG_CUDA_HOST_EMULATION_HPP
