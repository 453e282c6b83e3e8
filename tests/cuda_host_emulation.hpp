// cuda_host_emulation.hpp - run gpulogreg's CUDA kernels on the host, for tests.
//
// There is no GPU on the development and CI machines, so the tests compile
// kernels/gpulogreg_kernels.cu with a host C++20 compiler after this header.
// Each CUDA thread of a block runs as a fiber (its own stack, made once with
// makecontext; switched with _setjmp/_longjmp) on one OS thread. A fiber runs
// until it waits at a barrier; a scheduler runs every ready thread of the
// block, in thread order, and then releases the waiting ones:
//
// * __syncthreads(): a thread waits until every thread of the block that has
//   not finished waits there too -- exactly a block barrier's guarantee;
// * __shfl_xor_sync(0xffffffff, v, offset, width): the thread posts v and
//   waits until all 32 lanes of its warp have posted theirs (the full mask
//   requires every lane to take part); each then reads its partner's value
//   (lane ^ offset, within its segment of `width` lanes). Posts alternate
//   between two slots, so a lane released first cannot overwrite a value its
//   partner has yet to read.
//
// A block whose threads can never all be released (a lane at __syncthreads
// while its warp shuffles, a lane that finished while its warp shuffles) is a
// kernel bug: the emulation aborts. __shared__ variables are statics (one
// block runs at a time), and threadIdx / blockIdx / blockDim / gridDim are
// emulated. atomicAdd is a plain addition: fibers never interleave inside
// one, so the emulated sums are deterministic, in thread order -- unlike the
// device's, whose order follows the timing. Kernel logic (indexing,
// grid-stride loops, warp and block reductions, the layout of the partial
// sums, argument order and types) is thereby executed and compared with
// NumPy; what cannot be checked here is device-only behaviour (timing,
// coalescing, warp scheduling, the order of atomics).
//
// A missing barrier shows up deterministically: between releases the threads
// run one after another, so a thread reading a value that another thread
// writes in the same phase sees the stale value.
//
// Restrictions the kernels must respect to run here (they do; keep it so):
// no warp intrinsics but full-mask __shfl_xor_sync, no atomics but atomicAdd
// on double, no dynamic shared memory, one-dimensional grids and blocks whose
// size is a multiple of 32, small stack use (each fiber has FIBER_STACK bytes).

#ifndef GPULOGREG_CUDA_HOST_EMULATION_HPP
#define GPULOGREG_CUDA_HOST_EMULATION_HPP

#include <ucontext.h>

#include <csetjmp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>

struct dim3 {
  unsigned x, y, z;
};

namespace emu {

constexpr unsigned MAX_THREADS = 1024;
constexpr unsigned WARP = 32;
constexpr std::size_t FIBER_STACK = 64 * 1024;

inline dim3 thread_idx{0, 0, 0};
inline dim3 block_idx{0, 0, 0};
inline dim3 block_dim{1, 1, 1};
inline dim3 grid_dim{1, 1, 1};

// Fiber t is created once per process (makecontext gives it its own stack)
// and runs the current kernel body in a loop, parking between runs. Switches
// use _setjmp/_longjmp, which unlike swapcontext/setcontext make no system
// call, so a block costs no syscalls at all.
// What a parked thread waits for.
enum class Wait { nothing, block_barrier, warp_shuffle };

struct Fiber {
  ucontext_t context;
  std::jmp_buf jump;
  bool created;
  bool started;
  bool done;
  Wait wait;
};

inline std::jmp_buf scheduler;
inline Fiber fibers[MAX_THREADS];
inline char* stacks = nullptr;  // MAX_THREADS * FIBER_STACK bytes, touched only as used
inline unsigned current = 0;
inline std::function<void()>* body = nullptr;

// Park the current thread until the scheduler releases what it waits for.
inline void park(Wait wait) {
  fibers[current].wait = wait;
  if (_setjmp(fibers[current].jump) == 0) {
    _longjmp(scheduler, 1);
  }
}

// Shuffle slots: [parity][thread], 8 bytes each, and each thread's count of
// shuffles in the current block (lanes of a warp shuffle in step, so they
// agree on the parity).
inline unsigned char shuffle_slots[2][MAX_THREADS][8];
inline unsigned shuffle_count[MAX_THREADS];

inline void fiber_main() {
  for (;;) {  // one iteration per (block, launch) this thread takes part in
    (*body)();
    fibers[current].done = true;
    park(Wait::nothing);
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

// Release the threads whose wait is over: all live threads at __syncthreads,
// or all 32 lanes of a warp at a shuffle. Returns whether any was released.
inline bool release(unsigned block) {
  unsigned live = 0;
  unsigned at_barrier = 0;
  for (unsigned t = 0; t < block; ++t) {
    if (!fibers[t].done) {
      ++live;
      at_barrier += fibers[t].wait == Wait::block_barrier;
    }
  }
  if (live > 0 && at_barrier == live) {
    for (unsigned t = 0; t < block; ++t) fibers[t].wait = Wait::nothing;
    return true;
  }
  bool released = false;
  for (unsigned w = 0; w < block; w += WARP) {
    bool all = true;
    for (unsigned t = w; t < w + WARP; ++t) {
      all = all && !fibers[t].done && fibers[t].wait == Wait::warp_shuffle;
    }
    if (all) {
      for (unsigned t = w; t < w + WARP; ++t) fibers[t].wait = Wait::nothing;
      released = true;
    }
  }
  return released;
}

// Run kernel<<<grid, block>>>(args...): blocks in turn; within a block, rounds
// in which every ready thread runs to its next barrier, in thread order, and
// then the threads whose barrier is complete are released. The parameter pack
// is deduced from the kernel and from the arguments alike, so a caller whose
// argument types differ from the kernel's does not compile.
template <typename... P>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, P... args) {
  if (block == 0 || block > MAX_THREADS || block % WARP != 0) std::abort();
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
      fibers[t].wait = Wait::nothing;
      shuffle_count[t] = 0;
    }
    for (;;) {
      for (unsigned t = 0; t < block; ++t) {
        if (!fibers[t].done && fibers[t].wait == Wait::nothing) run_fiber(t);
      }
      bool finished = true;
      for (unsigned t = 0; t < block; ++t) finished = finished && fibers[t].done;
      if (finished) break;
      if (!release(block)) std::abort();  // divergent barriers: a kernel bug
    }
  }
  body = nullptr;
}

// __shfl_xor_sync on the host (see the top of this file).
template <typename V>
V shfl_xor_sync(unsigned mask, V value, int lane_mask, int width) {
  static_assert(sizeof(V) <= 8, "shuffles move at most 8 bytes");
  const bool power_of_two = width > 0 && (width & (width - 1)) == 0;
  if (mask != 0xffffffffu || !power_of_two || width > static_cast<int>(WARP) || lane_mask < 0 ||
      lane_mask >= width) {
    std::abort();  // the kernels use the full mask, within a segment
  }
  const unsigned t = current;
  const unsigned parity = shuffle_count[t]++ & 1u;
  std::memcpy(shuffle_slots[parity][t], &value, sizeof(V));
  park(Wait::warp_shuffle);
  const unsigned lane = t % WARP;
  const unsigned partner = t - lane + (lane ^ static_cast<unsigned>(lane_mask));
  V out;
  std::memcpy(&out, shuffle_slots[parity][partner], sizeof(V));
  return out;
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

inline void __syncthreads() { ::emu::park(::emu::Wait::block_barrier); }

template <typename V>
inline V __shfl_xor_sync(unsigned mask, V value, int lane_mask, int width = 32) {
  return ::emu::shfl_xor_sync(mask, value, lane_mask, width);
}

// Fibers switch only at barriers, so a plain addition is atomic here.
inline double atomicAdd(double* address, double value) {
  const double old = *address;
  *address = old + value;
  return old;
}

#endif  // GPULOGREG_CUDA_HOST_EMULATION_HPP
