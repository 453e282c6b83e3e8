// gpulogreg_kernels.cu - the CUDA kernels of the CuPy backend.
//
// Layout (as in CuPy's cupyx.scipy.special sources): one templated device
// function per kernel in namespace gpulogreg, and thin extern "C" entry points
// per dtype named gpulogreg_<name>_f32 / gpulogreg_<name>_f64, so CuPy's
// RawModule finds them without name mangling. The Python side
// (gpulogreg/backends/_cuda.py, KERNELS) declares the same signatures;
// tests/test_kernels_host.py checks the two agree.
//
// Conventions:
// * Every kernel is launched with GPULOGREG_BLOCK threads per block (the block
//   reductions rely on it) and any number of blocks: loops over rows are
//   grid-stride loops, so the grid size (chosen from the device's attributes
//   and the kernel's register count) changes only the fixed order of the
//   partial sums, never the coverage.
// * Decision values arrive as xw = X @ coef in X's dtype T (a cuBLAS product)
//   plus intercepts read from the float64 parameter vector on the device, so
//   no scalar crosses to the host to launch a kernel.
// * All per-row arithmetic and all accumulation is in double, also for float
//   data: the per-row transcendental work is O(1) against O(n_features) bytes
//   of X per row, so the kernels stay memory-bound.
// * Reductions are deterministic for a given grid: each block reduces its
//   threads' double partial sums in a fixed tree order and writes one value
//   per block (partials); gpulogreg_sum_partials_f64 then reduces the
//   per-block values in a fixed order. No atomics anywhere but in
//   gpulogreg_csr_scatter_add (see there: its sums are not bitwise
//   reproducible, and it is not the default). The grid follows
//   the register count NVRTC gives a kernel, so another NVRTC/CUDA/CuPy
//   version can change the order, and the last bits, on the same GPU model.
// * Residuals are written in T because they feed the cuBLAS product X^T r
//   (the CSR kernels below write them in double: their transposed products
//   are ours, or take a cast copy).
// * Flush to zero: CuPy compiles with -ftz=true (it appends the option after
//   ours; NVRTC's last -ftz wins), so in the _f32 entry points every float
//   result below 2^-126 is stored as a signed zero: sigmoid_f32 is exactly 0
//   for z below about -87.3, float softmax probabilities and residuals below
//   2^-126 are 0 (the residual's double value still enters the partial
//   sums), and subnormal float inputs read as zero. Double arithmetic keeps
//   IEEE subnormals. tests/_cuda_emulator.py models this on the host.

#include "gpulogreg_math.cuh"

// Threads per block of every kernel. _cuda.BLOCK_SIZE must equal it.
#define GPULOGREG_BLOCK 256

namespace gpulogreg {

__device__ __forceinline__ long long first_row() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long row_stride() {
  return static_cast<long long>(blockDim.x) * gridDim.x;
}

// Sum of one value per thread over the block, in a fixed tree order; every
// thread gets the total. `shared` holds GPULOGREG_BLOCK doubles.
__device__ __forceinline__ double block_sum(double value, double* shared) {
  const unsigned t = threadIdx.x;
  shared[t] = value;
  __syncthreads();
  for (unsigned half = GPULOGREG_BLOCK / 2; half > 0; half >>= 1) {
    if (t < half) {
      shared[t] += shared[t + half];
    }
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();  // `shared` may be reused by the caller's next block_sum
  return total;
}

// Decision value of class k of a row: xw[k] + intercept[k * stride].
template <typename T>
__device__ __forceinline__ double class_decision(const T* xw_row, const double* intercept,
                                                 int intercept_stride, int has_intercept, int k) {
  const double b =
      has_intercept ? intercept[static_cast<long long>(k) * intercept_stride] : 0.0;
  return static_cast<double>(xw_row[k]) + b;
}

// Binary loss and residual, fused:
//   loss_i = s_i [max(z_i, 0) - y_i z_i + log1p(exp(-|z_i|))],  z_i = xw_i + b
//   r_i    = s_i (sigmoid(z_i) - y_i)            (written when write_residual)
//   partials[block]            = sum of loss_i over the block's rows
//   partials[gridDim + block]  = sum of r_i over the block's rows (d/db)
template <typename T>
__device__ void logistic_loss_grad(const T* __restrict__ xw, const double* __restrict__ intercept,
                                   int has_intercept, const int* __restrict__ y,
                                   const double* __restrict__ sample_weight,
                                   T* __restrict__ residual, int write_residual,
                                   double* __restrict__ partials, long long n_rows) {
  __shared__ double shared[GPULOGREG_BLOCK];
  const double b = has_intercept ? intercept[0] : 0.0;
  double loss = 0.0;
  double residual_sum = 0.0;
  for (long long i = first_row(); i < n_rows; i += row_stride()) {
    const LossResidual<double> lr = weighted_logistic<double>(
        static_cast<double>(xw[i]) + b, static_cast<double>(y[i]), sample_weight[i]);
    loss += lr.loss;
    residual_sum += lr.residual;
    if (write_residual) {
      residual[i] = static_cast<T>(lr.residual);
    }
  }
  loss = block_sum(loss, shared);
  residual_sum = block_sum(residual_sum, shared);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = loss;
    partials[gridDim.x + blockIdx.x] = residual_sum;
  }
}

// Multinomial loss and residuals, fused, for xw of shape (n_rows, n_classes):
//   loss_i = s_i [logsumexp_k(z_ik) - z_{i, y_i}],  z_ik = xw_ik + b_k
//   R_ik   = s_i (softmax_k(z_i) - [k == y_i])      (written when write_residual)
//   partials[block] = sum of loss_i over the block's rows
// The intercept gradient sum_i R_ik is reduced by the caller from R.
template <typename T>
__device__ void softmax_loss_grad(const T* __restrict__ xw, const double* __restrict__ intercept,
                                  int intercept_stride, int has_intercept,
                                  const int* __restrict__ y,
                                  const double* __restrict__ sample_weight,
                                  T* __restrict__ residual, int write_residual,
                                  double* __restrict__ partials, long long n_rows,
                                  int n_classes) {
  __shared__ double shared[GPULOGREG_BLOCK];
  double loss = 0.0;
  for (long long i = first_row(); i < n_rows; i += row_stride()) {
    const T* xw_row = xw + i * n_classes;
    const int yi = y[i];
    double zmax = class_decision(xw_row, intercept, intercept_stride, has_intercept, 0);
    for (int k = 1; k < n_classes; ++k) {
      zmax = gl_max(zmax, class_decision(xw_row, intercept, intercept_stride, has_intercept, k));
    }
    double zy = zmax;
    double term_y = 1.0;
    double others = 0.0;  // sum over k != y of exp(z_k - zmax)
    for (int k = 0; k < n_classes; ++k) {
      const double z = class_decision(xw_row, intercept, intercept_stride, has_intercept, k);
      const double term = softmax_term(z, zmax);
      if (k == yi) {
        zy = z;
        term_y = term;
      } else {
        others += term;
      }
    }
    const double s = sample_weight[i];
    loss += s * softmax_loss(zy, zmax, others);
    if (write_residual) {
      const double sumexp = term_y + others;
      T* r_row = residual + i * n_classes;
      for (int k = 0; k < n_classes; ++k) {
        const double z = class_decision(xw_row, intercept, intercept_stride, has_intercept, k);
        const double r = softmax_residual(softmax_term(z, zmax), sumexp, others, k == yi);
        r_row[k] = static_cast<T>(s * r);
      }
    }
  }
  loss = block_sum(loss, shared);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = loss;
  }
}

// Binary Newton weights h_i = s_i p_i (1 - p_i), for the Hessian X^T diag(h) X
// and Hessian-vector products.
template <typename T>
__device__ void logistic_newton_weights(const T* __restrict__ xw,
                                        const double* __restrict__ intercept, int has_intercept,
                                        const double* __restrict__ sample_weight,
                                        double* __restrict__ weights, long long n_rows) {
  const double b = has_intercept ? intercept[0] : 0.0;
  for (long long i = first_row(); i < n_rows; i += row_stride()) {
    weights[i] = logistic_newton_weight<double>(static_cast<double>(xw[i]) + b, sample_weight[i]);
  }
}

// Probabilities of the positive class, p = sigmoid(z), in T (in place allowed).
template <typename T>
__device__ void sigmoid_rows(const T* z, T* p, long long n) {
  for (long long i = first_row(); i < n; i += row_stride()) {
    p[i] = sigmoid<T>(z[i]);
  }
}

// Row-wise softmax of z of shape (n_rows, n_classes), in T (in place allowed:
// each entry is read before it is written).
template <typename T>
__device__ void softmax_rows(const T* z, T* p, long long n_rows, int n_classes) {
  for (long long i = first_row(); i < n_rows; i += row_stride()) {
    const T* z_row = z + i * n_classes;
    T* p_row = p + i * n_classes;
    T zmax = z_row[0];
    for (int k = 1; k < n_classes; ++k) {
      zmax = gl_max(zmax, z_row[k]);
    }
    T sumexp = T(0);
    for (int k = 0; k < n_classes; ++k) {
      sumexp += softmax_term(z_row[k], zmax);
    }
    const T inv = T(1) / sumexp;  // sumexp >= 1: the maximum contributes exp(0)
    for (int k = 0; k < n_classes; ++k) {
      p_row[k] = softmax_term(z_row[k], zmax) * inv;
    }
  }
}

// Second stage of the deterministic reductions: block b sums the series
// partials[b * n_partials : (b + 1) * n_partials] into out[b], in a fixed order.
__device__ void sum_partials(const double* __restrict__ partials, long long n_partials,
                             double* __restrict__ out) {
  __shared__ double shared[GPULOGREG_BLOCK];
  const double* series = partials + static_cast<long long>(blockIdx.x) * n_partials;
  double acc = 0.0;
  for (long long j = threadIdx.x; j < n_partials; j += blockDim.x) {
    acc += series[j];
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) {
    out[blockIdx.x] = acc;
  }
}

// ---------------------------------------------------------------------------
// CSR kernels: X in compressed sparse rows (data, indices, indptr) with T =
// float or double values and I = int or long long indices (both arrays alike).
//
// A group of `lanes` consecutive threads of a warp (a power of two from 1 to
// 32, chosen by the caller from the mean row length) reads one row: lane l
// takes the row's entries l, l + lanes, ..., so a warp reads 32 consecutive
// values and indices at a time, and the lanes' double partial sums are
// combined by a butterfly of warp shuffles (group_sum) in a fixed order that
// leaves the same bits in every lane. Rows are dealt to warps in tiles of
// 32 / lanes rows by a grid-stride loop whose bounds depend on the warp only,
// so every lane of a warp runs the same iterations and takes part in every
// shuffle (a full-mask __shfl_xor_sync requires it); lanes past the last row
// read nothing and add zeros. Products x_ij c_j are formed in double from the
// value in T and a double coefficient (the parameter vector itself: no float
// copy), so float32 data accumulate in double as float64 data do. Loops over
// entries run over long long positions (no int overflow near 2^31).
// ---------------------------------------------------------------------------

// Threads per warp; _cuda.WARP_SIZE must equal it.
#define GPULOGREG_WARP 32

// A thread's place in the row groups of a launch with `lanes` lanes per row.
struct RowGroups {
  long long first_tile;   // this warp's first tile of 32 / lanes rows
  long long tile_stride;  // warps in the grid
  int lane;               // 0 .. lanes - 1 within the row's group
  int group;              // the group's row within a tile
  int rows_per_tile;      // 32 / lanes
};

__device__ __forceinline__ RowGroups row_groups(int lanes) {
  RowGroups g;
  g.first_tile = first_row() / GPULOGREG_WARP;
  g.tile_stride = row_stride() / GPULOGREG_WARP;
  const int warp_lane = static_cast<int>(threadIdx.x % GPULOGREG_WARP);
  g.lane = warp_lane % lanes;
  g.group = warp_lane / lanes;
  g.rows_per_tile = GPULOGREG_WARP / lanes;
  return g;
}

// Sum of `value` over the `lanes` lanes of a group, by a butterfly of
// shuffles: at each step lane l adds the value of lane l ^ offset, so every
// lane ends with the same bits (a + b == b + a in IEEE arithmetic) and the
// order of the additions depends on `lanes` only.
__device__ __forceinline__ double group_sum(double value, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset, lanes);
  }
  return value;
}

// The entries [start, end) of row `row` (empty for a lane past the last row).
template <typename I>
__device__ __forceinline__ void row_bounds(const I* __restrict__ indptr, long long row,
                                           bool active, long long* start, long long* end) {
  *start = active ? static_cast<long long>(indptr[row]) : 0;
  *end = active ? static_cast<long long>(indptr[row + 1]) : 0;
}

// sum_p v_p dense[indices[p] * feature_stride] over a row's entries [start,
// end), v_p = data[p] (or its square), reduced over the group: every lane of
// the group returns the row's total.
template <typename T, typename I>
__device__ __forceinline__ double row_dot(const T* __restrict__ data,
                                          const I* __restrict__ indices, long long start,
                                          long long end, const double* __restrict__ dense,
                                          long long feature_stride, int square,
                                          const RowGroups& g, int lanes) {
  double acc = 0.0;
  for (long long p = start + g.lane; p < end; p += lanes) {
    const double x = static_cast<double>(data[p]);
    const double v = square ? x * x : x;
    acc += v * dense[static_cast<long long>(indices[p]) * feature_stride];
  }
  return group_sum(acc, lanes);
}

// Binary loss and residual of CSR rows, fused with their decision values:
//   z_i    = sum_j x_ij coef_j + b
//   loss_i = s_i [max(z_i, 0) - y_i z_i + log1p(exp(-|z_i|))]
//   r_i    = s_i (sigmoid(z_i) - y_i)              (written in double)
//   partials[block]           = sum of loss_i over the block's rows
//   partials[gridDim + block] = sum of r_i over the block's rows (d/db)
template <typename T, typename I>
__device__ void csr_logistic_loss_grad(const T* __restrict__ data, const I* __restrict__ indices,
                                       const I* __restrict__ indptr,
                                       const double* __restrict__ coef,
                                       const double* __restrict__ intercept, int has_intercept,
                                       const int* __restrict__ y,
                                       const double* __restrict__ sample_weight,
                                       double* __restrict__ residual,
                                       double* __restrict__ partials, long long n_rows,
                                       int lanes) {
  __shared__ double shared[GPULOGREG_BLOCK];
  const RowGroups g = row_groups(lanes);
  const double b = has_intercept ? intercept[0] : 0.0;
  double loss = 0.0;
  double residual_sum = 0.0;
  for (long long tile = g.first_tile; tile * g.rows_per_tile < n_rows; tile += g.tile_stride) {
    const long long i = tile * g.rows_per_tile + g.group;
    const bool active = i < n_rows;
    long long start, end;
    row_bounds(indptr, i, active, &start, &end);
    const double z = row_dot(data, indices, start, end, coef, 1, 0, g, lanes) + b;
    if (active && g.lane == 0) {
      const LossResidual<double> lr =
          weighted_logistic<double>(z, static_cast<double>(y[i]), sample_weight[i]);
      loss += lr.loss;
      residual_sum += lr.residual;
      residual[i] = lr.residual;
    }
  }
  loss = block_sum(loss, shared);
  residual_sum = block_sum(residual_sum, shared);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = loss;
    partials[gridDim.x + blockIdx.x] = residual_sum;
  }
}

// Multinomial loss and residuals of CSR rows, fused with their decision
// values, for coefficients coef[k * coef_stride + j] and intercepts
// intercept[k * coef_stride] (the parameter layout: one row per class):
//   z_ik   = sum_j x_ij coef_kj + b_k
//   loss_i = s_i [logsumexp_k(z_ik) - z_{i, y_i}]
//   R_ik   = s_i (softmax_k(z_i) - [k == y_i])
//   partials[block] = sum of loss_i over the block's rows
// `residual` (n_rows, n_classes) in double first receives the row's z_ik
// (the group's first lane writes them and reads them back), then R_ik. The
// intercept gradient sum_i R_ik is reduced by the caller from R.
template <typename T, typename I>
__device__ void csr_softmax_loss_grad(const T* __restrict__ data, const I* __restrict__ indices,
                                      const I* __restrict__ indptr,
                                      const double* __restrict__ coef, long long coef_stride,
                                      const double* __restrict__ intercept, int has_intercept,
                                      const int* __restrict__ y,
                                      const double* __restrict__ sample_weight,
                                      double* __restrict__ residual,
                                      double* __restrict__ partials, long long n_rows,
                                      int n_classes, int lanes) {
  __shared__ double shared[GPULOGREG_BLOCK];
  const RowGroups g = row_groups(lanes);
  double loss = 0.0;
  for (long long tile = g.first_tile; tile * g.rows_per_tile < n_rows; tile += g.tile_stride) {
    const long long i = tile * g.rows_per_tile + g.group;
    const bool active = i < n_rows;
    long long start, end;
    row_bounds(indptr, i, active, &start, &end);
    double* r_row = residual + (active ? i : 0) * n_classes;
    for (int k = 0; k < n_classes; ++k) {
      const long long offset = static_cast<long long>(k) * coef_stride;
      const double z = row_dot(data, indices, start, end, coef + offset, 1, 0, g, lanes) +
                       (has_intercept ? intercept[offset] : 0.0);
      if (active && g.lane == 0) {
        r_row[k] = z;
      }
    }
    if (active && g.lane == 0) {
      const int yi = y[i];
      double zmax = r_row[0];
      for (int k = 1; k < n_classes; ++k) {
        zmax = gl_max(zmax, r_row[k]);
      }
      const double zy = r_row[yi];
      double others = 0.0;  // sum over k != y of exp(z_k - zmax)
      for (int k = 0; k < n_classes; ++k) {
        if (k != yi) {
          others += softmax_term(r_row[k], zmax);
        }
      }
      const double s = sample_weight[i];
      loss += s * softmax_loss(zy, zmax, others);
      // One division per row (a division per class would also make ptxas
      // spill around its slow path in this loop).
      const double scale = s / (softmax_term(zy, zmax) + others);
      for (int k = 0; k < n_classes; ++k) {
        r_row[k] = softmax_weighted_residual(softmax_term(r_row[k], zmax), scale, others, k == yi);
      }
    }
  }
  loss = block_sum(loss, shared);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = loss;
  }
}

// Products of CSR rows with dense vectors, in double:
//   out[i * out_row_stride + k * out_class_stride] =
//       sum_j v_ij dense[k * class_stride + j * feature_stride] + b_k
// with v_ij = x_ij (square = 0) or x_ij^2 (square = 1) and
// b_k = intercept[k * class_stride] when has_intercept (else 0). With the
// parameter layout (class_stride = n_cols, feature_stride = 1) this is the
// decision function X W^T + b; on the CSR arrays of X^T (the backend's CSC
// copy) with dense = R of shape (n_samples, K) (class_stride = 1,
// feature_stride = K) it is the gradient's X^T R as a gather: every sum in a
// fixed order, no atomics.
template <typename T, typename I>
__device__ void csr_matvecs(const T* __restrict__ data, const I* __restrict__ indices,
                            const I* __restrict__ indptr, const double* __restrict__ dense,
                            long long class_stride, long long feature_stride,
                            const double* __restrict__ intercept, int has_intercept, int square,
                            double* __restrict__ out, long long out_row_stride,
                            long long out_class_stride, long long n_rows, int n_outputs,
                            int lanes) {
  const RowGroups g = row_groups(lanes);
  for (long long tile = g.first_tile; tile * g.rows_per_tile < n_rows; tile += g.tile_stride) {
    const long long i = tile * g.rows_per_tile + g.group;
    const bool active = i < n_rows;
    long long start, end;
    row_bounds(indptr, i, active, &start, &end);
    for (int k = 0; k < n_outputs; ++k) {
      const long long offset = static_cast<long long>(k) * class_stride;
      const double total = row_dot(data, indices, start, end, dense + offset, feature_stride,
                                   square, g, lanes);
      if (active && g.lane == 0) {
        out[i * out_row_stride + k * out_class_stride] =
            total + (has_intercept ? intercept[offset] : 0.0);
      }
    }
  }
}

// The gradient's X^T R by scattering: for every stored x_ij,
//   out[k * out_class_stride + j] += v_ij R[i * n_outputs + k]
// with v_ij = x_ij or x_ij^2, by double atomicAdd (out holds zeros, or what
// to add to, before the launch). The order in which the additions reach each
// out[j] depends on the threads' timing, so these sums are NOT bitwise
// reproducible run to run (they agree to rounding); the backend's default is
// the CSC gather (csr_matvecs on the CSC copy, then segment_sums).
template <typename T, typename I>
__device__ void csr_scatter_add(const T* __restrict__ data, const I* __restrict__ indices,
                                const I* __restrict__ indptr, const double* __restrict__ R,
                                int square, double* __restrict__ out, long long out_class_stride,
                                long long n_rows, int n_outputs, int lanes) {
  const RowGroups g = row_groups(lanes);
  for (long long tile = g.first_tile; tile * g.rows_per_tile < n_rows; tile += g.tile_stride) {
    const long long i = tile * g.rows_per_tile + g.group;
    const bool active = i < n_rows;
    long long start, end;
    row_bounds(indptr, i, active, &start, &end);
    const double* r_row = R + (active ? i : 0) * n_outputs;
    for (long long p = start + g.lane; p < end; p += lanes) {
      const double x = static_cast<double>(data[p]);
      const double v = square ? x * x : x;
      double* target = out + static_cast<long long>(indices[p]);
      for (int k = 0; k < n_outputs; ++k, target += out_class_stride) {
        atomicAdd(target, v * r_row[k]);
      }
    }
  }
}

// Sums of consecutive segments of the rows of `values` (n_pieces, n_outputs):
//   out[k * out_class_stride + s] = sum over q in [segments[s], segments[s + 1])
//                                   of values[q * n_outputs + k]
// one thread per segment, q ascending: the second step of the CSC gather,
// which cuts long columns into pieces of bounded length (one partial sum per
// piece from csr_matvecs, then this fixed-order sum per column).
template <typename I>
__device__ void segment_sums(const double* __restrict__ values, const I* __restrict__ segments,
                             double* __restrict__ out, long long out_class_stride,
                             long long n_segments, int n_outputs) {
  for (long long s = first_row(); s < n_segments; s += row_stride()) {
    const long long first = static_cast<long long>(segments[s]);
    const long long last = static_cast<long long>(segments[s + 1]);
    for (int k = 0; k < n_outputs; ++k) {
      double acc = 0.0;
      for (long long q = first; q < last; ++q) {
        acc += values[q * n_outputs + k];
      }
      out[k * out_class_stride + s] = acc;
    }
  }
}

}  // namespace gpulogreg

// ---------------------------------------------------------------------------
// extern "C" entry points, one per dtype: f32 = float X, f64 = double X.
// ---------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_logistic_loss_grad_f32(const float* xw, const double* intercept, int has_intercept,
                                 const int* y, const double* sample_weight, float* residual,
                                 int write_residual, double* partials, long long n_rows) {
  gpulogreg::logistic_loss_grad<float>(xw, intercept, has_intercept, y, sample_weight, residual,
                                       write_residual, partials, n_rows);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_logistic_loss_grad_f64(const double* xw, const double* intercept, int has_intercept,
                                 const int* y, const double* sample_weight, double* residual,
                                 int write_residual, double* partials, long long n_rows) {
  gpulogreg::logistic_loss_grad<double>(xw, intercept, has_intercept, y, sample_weight, residual,
                                        write_residual, partials, n_rows);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_softmax_loss_grad_f32(const float* xw, const double* intercept, int intercept_stride,
                                int has_intercept, const int* y, const double* sample_weight,
                                float* residual, int write_residual, double* partials,
                                long long n_rows, int n_classes) {
  gpulogreg::softmax_loss_grad<float>(xw, intercept, intercept_stride, has_intercept, y,
                                      sample_weight, residual, write_residual, partials, n_rows,
                                      n_classes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_softmax_loss_grad_f64(const double* xw, const double* intercept, int intercept_stride,
                                int has_intercept, const int* y, const double* sample_weight,
                                double* residual, int write_residual, double* partials,
                                long long n_rows, int n_classes) {
  gpulogreg::softmax_loss_grad<double>(xw, intercept, intercept_stride, has_intercept, y,
                                       sample_weight, residual, write_residual, partials, n_rows,
                                       n_classes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_logistic_newton_weights_f32(const float* xw, const double* intercept,
                                      int has_intercept, const double* sample_weight,
                                      double* weights, long long n_rows) {
  gpulogreg::logistic_newton_weights<float>(xw, intercept, has_intercept, sample_weight, weights,
                                            n_rows);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_logistic_newton_weights_f64(const double* xw, const double* intercept,
                                      int has_intercept, const double* sample_weight,
                                      double* weights, long long n_rows) {
  gpulogreg::logistic_newton_weights<double>(xw, intercept, has_intercept, sample_weight,
                                             weights, n_rows);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_sigmoid_f32(const float* z, float* p, long long n) {
  gpulogreg::sigmoid_rows<float>(z, p, n);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_sigmoid_f64(const double* z, double* p, long long n) {
  gpulogreg::sigmoid_rows<double>(z, p, n);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_softmax_f32(const float* z, float* p, long long n_rows, int n_classes) {
  gpulogreg::softmax_rows<float>(z, p, n_rows, n_classes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_softmax_f64(const double* z, double* p, long long n_rows, int n_classes) {
  gpulogreg::softmax_rows<double>(z, p, n_rows, n_classes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_sum_partials_f64(const double* partials, long long n_partials, double* out) {
  gpulogreg::sum_partials(partials, n_partials, out);
}

// CSR entry points: gpulogreg_<name>_<f32|f64>_<i32|i64> (value type, index type).

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_logistic_loss_grad_f32_i32(const float* data, const int* indices, const int* indptr,
                                         const double* coef, const double* intercept,
                                         int has_intercept, const int* y,
                                         const double* sample_weight, double* residual,
                                         double* partials, long long n_rows, int lanes) {
  gpulogreg::csr_logistic_loss_grad<float, int>(data, indices, indptr, coef, intercept,
                                                has_intercept, y, sample_weight, residual,
                                                partials, n_rows, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_logistic_loss_grad_f32_i64(const float* data, const long long* indices,
                                         const long long* indptr, const double* coef,
                                         const double* intercept, int has_intercept, const int* y,
                                         const double* sample_weight, double* residual,
                                         double* partials, long long n_rows, int lanes) {
  gpulogreg::csr_logistic_loss_grad<float, long long>(data, indices, indptr, coef, intercept,
                                                      has_intercept, y, sample_weight, residual,
                                                      partials, n_rows, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_logistic_loss_grad_f64_i32(const double* data, const int* indices, const int* indptr,
                                         const double* coef, const double* intercept,
                                         int has_intercept, const int* y,
                                         const double* sample_weight, double* residual,
                                         double* partials, long long n_rows, int lanes) {
  gpulogreg::csr_logistic_loss_grad<double, int>(data, indices, indptr, coef, intercept,
                                                 has_intercept, y, sample_weight, residual,
                                                 partials, n_rows, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_logistic_loss_grad_f64_i64(const double* data, const long long* indices,
                                         const long long* indptr, const double* coef,
                                         const double* intercept, int has_intercept, const int* y,
                                         const double* sample_weight, double* residual,
                                         double* partials, long long n_rows, int lanes) {
  gpulogreg::csr_logistic_loss_grad<double, long long>(data, indices, indptr, coef, intercept,
                                                       has_intercept, y, sample_weight, residual,
                                                       partials, n_rows, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_softmax_loss_grad_f32_i32(const float* data, const int* indices, const int* indptr,
                                        const double* coef, long long coef_stride,
                                        const double* intercept, int has_intercept, const int* y,
                                        const double* sample_weight, double* residual,
                                        double* partials, long long n_rows, int n_classes,
                                        int lanes) {
  gpulogreg::csr_softmax_loss_grad<float, int>(data, indices, indptr, coef, coef_stride, intercept,
                                               has_intercept, y, sample_weight, residual, partials,
                                               n_rows, n_classes, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_softmax_loss_grad_f32_i64(const float* data, const long long* indices,
                                        const long long* indptr, const double* coef,
                                        long long coef_stride, const double* intercept,
                                        int has_intercept, const int* y,
                                        const double* sample_weight, double* residual,
                                        double* partials, long long n_rows, int n_classes,
                                        int lanes) {
  gpulogreg::csr_softmax_loss_grad<float, long long>(data, indices, indptr, coef, coef_stride,
                                                     intercept, has_intercept, y, sample_weight,
                                                     residual, partials, n_rows, n_classes, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_softmax_loss_grad_f64_i32(const double* data, const int* indices, const int* indptr,
                                        const double* coef, long long coef_stride,
                                        const double* intercept, int has_intercept, const int* y,
                                        const double* sample_weight, double* residual,
                                        double* partials, long long n_rows, int n_classes,
                                        int lanes) {
  gpulogreg::csr_softmax_loss_grad<double, int>(data, indices, indptr, coef, coef_stride,
                                                intercept, has_intercept, y, sample_weight,
                                                residual, partials, n_rows, n_classes, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_softmax_loss_grad_f64_i64(const double* data, const long long* indices,
                                        const long long* indptr, const double* coef,
                                        long long coef_stride, const double* intercept,
                                        int has_intercept, const int* y,
                                        const double* sample_weight, double* residual,
                                        double* partials, long long n_rows, int n_classes,
                                        int lanes) {
  gpulogreg::csr_softmax_loss_grad<double, long long>(data, indices, indptr, coef, coef_stride,
                                                      intercept, has_intercept, y, sample_weight,
                                                      residual, partials, n_rows, n_classes,
                                                      lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_matvecs_f32_i32(const float* data, const int* indices, const int* indptr,
                              const double* dense, long long class_stride,
                              long long feature_stride, const double* intercept, int has_intercept,
                              int square, double* out, long long out_row_stride,
                              long long out_class_stride, long long n_rows, int n_outputs,
                              int lanes) {
  gpulogreg::csr_matvecs<float, int>(data, indices, indptr, dense, class_stride, feature_stride,
                                     intercept, has_intercept, square, out, out_row_stride,
                                     out_class_stride, n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_matvecs_f32_i64(const float* data, const long long* indices, const long long* indptr,
                              const double* dense, long long class_stride,
                              long long feature_stride, const double* intercept, int has_intercept,
                              int square, double* out, long long out_row_stride,
                              long long out_class_stride, long long n_rows, int n_outputs,
                              int lanes) {
  gpulogreg::csr_matvecs<float, long long>(data, indices, indptr, dense, class_stride,
                                           feature_stride, intercept, has_intercept, square, out,
                                           out_row_stride, out_class_stride, n_rows, n_outputs,
                                           lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_matvecs_f64_i32(const double* data, const int* indices, const int* indptr,
                              const double* dense, long long class_stride,
                              long long feature_stride, const double* intercept, int has_intercept,
                              int square, double* out, long long out_row_stride,
                              long long out_class_stride, long long n_rows, int n_outputs,
                              int lanes) {
  gpulogreg::csr_matvecs<double, int>(data, indices, indptr, dense, class_stride, feature_stride,
                                      intercept, has_intercept, square, out, out_row_stride,
                                      out_class_stride, n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_matvecs_f64_i64(const double* data, const long long* indices,
                              const long long* indptr, const double* dense, long long class_stride,
                              long long feature_stride, const double* intercept, int has_intercept,
                              int square, double* out, long long out_row_stride,
                              long long out_class_stride, long long n_rows, int n_outputs,
                              int lanes) {
  gpulogreg::csr_matvecs<double, long long>(data, indices, indptr, dense, class_stride,
                                            feature_stride, intercept, has_intercept, square, out,
                                            out_row_stride, out_class_stride, n_rows, n_outputs,
                                            lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_scatter_add_f32_i32(const float* data, const int* indices, const int* indptr,
                                  const double* R, int square, double* out,
                                  long long out_class_stride, long long n_rows, int n_outputs,
                                  int lanes) {
  gpulogreg::csr_scatter_add<float, int>(data, indices, indptr, R, square, out, out_class_stride,
                                         n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_scatter_add_f32_i64(const float* data, const long long* indices,
                                  const long long* indptr, const double* R, int square,
                                  double* out, long long out_class_stride, long long n_rows,
                                  int n_outputs, int lanes) {
  gpulogreg::csr_scatter_add<float, long long>(data, indices, indptr, R, square, out,
                                               out_class_stride, n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_scatter_add_f64_i32(const double* data, const int* indices, const int* indptr,
                                  const double* R, int square, double* out,
                                  long long out_class_stride, long long n_rows, int n_outputs,
                                  int lanes) {
  gpulogreg::csr_scatter_add<double, int>(data, indices, indptr, R, square, out, out_class_stride,
                                          n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_csr_scatter_add_f64_i64(const double* data, const long long* indices,
                                  const long long* indptr, const double* R, int square,
                                  double* out, long long out_class_stride, long long n_rows,
                                  int n_outputs, int lanes) {
  gpulogreg::csr_scatter_add<double, long long>(data, indices, indptr, R, square, out,
                                                out_class_stride, n_rows, n_outputs, lanes);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_segment_sums_f64_i32(const double* values, const int* segments, double* out,
                               long long out_class_stride, long long n_segments, int n_outputs) {
  gpulogreg::segment_sums<int>(values, segments, out, out_class_stride, n_segments, n_outputs);
}

extern "C" __global__ void __launch_bounds__(GPULOGREG_BLOCK)
gpulogreg_segment_sums_f64_i64(const double* values, const long long* segments, double* out,
                               long long out_class_stride, long long n_segments, int n_outputs) {
  gpulogreg::segment_sums<long long>(values, segments, out, out_class_stride, n_segments,
                                     n_outputs);
}
