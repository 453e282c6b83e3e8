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
//   per-block values in a fixed order. No atomics anywhere. The grid follows
//   the register count NVRTC gives a kernel, so another NVRTC/CUDA/CuPy
//   version can change the order, and the last bits, on the same GPU model.
// * Residuals are written in T because they feed the cuBLAS product X^T r.
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
