// gpulogreg_math.cuh - scalar math of the logistic and softmax losses.
//
// Every function here is __host__ __device__: the CUDA kernels in
// gpulogreg_kernels.cu use them on the device, and tests/test_kernels_host.py
// compiles this header with a host C++ compiler and compares the results with
// a float64 (long double where available) NumPy reference on extreme inputs.
//
// Formulas (z a decision value, y in {0, 1} a label, s >= 0 a sample weight):
//
//   e            = exp(-|z|)                      in (0, 1], never overflows
//   q            = 1 / (1 + e)                    in [1/2, 1)
//   sigmoid(z)   = q      if z >= 0,  e q  otherwise
//   log1pexp(z)  = log(1 + exp(z)) = max(z, 0) + log1p(e)
//   loss(z, y)   = (max(z, 0) - y z) + log1p(e)   (the cancellation max(z,0) - y z
//                                                  is exact for y in {0, 1})
//   p - y        = (1 - y) - e q  if z >= 0,  e q - y  otherwise
//                  (no cancellation between p and y when p is close to y)
//   p (1 - p)    = e q^2                           (the Newton weight before s)
//
// Softmax over classes k (zmax the row's maximum, t_k = exp(z_k - zmax) <= 1,
// others = sum_{k != y} t_k):
//
//   loss         = log1p(others)                   if the true class holds zmax
//                = (zmax - z_y) + log(t_y + others) otherwise
//   p_k - [k==y] = t_k / sum_k t_k  for k != y,   -others / sum_k t_k  for k = y
//   s (p_k - [k==y]) = c t_k  or  -c others,   c = s / sum_k t_k (one division)
//
// None of them produces NaN or infinity for a finite z, y and s: e is in
// (0, 1], q in [1/2, 1), and the only unbounded term is max(z, 0) - y z, which
// is at most |z|.
//
// On the device the float instantiations run with flush to zero (CuPy
// compiles with -ftz=true): a float result below 2^-126 is 0, e.g.
// sigmoid<float>(z) = 0 for z below about -87.3, where the host's IEEE
// arithmetic returns subnormals down to about -103.9. The host tests of this
// header check IEEE results; the kernel tests model the device's flushing.
//
// The header has no includes under CUDA (NVRTC offers the math functions
// built in) and includes <math.h> on the host.

#ifndef GPULOGREG_MATH_CUH
#define GPULOGREG_MATH_CUH

#if defined(__CUDACC__)
#define GPULOGREG_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define GPULOGREG_HD inline
#endif

namespace gpulogreg {

// -- overloads that pick the float or double library function ---------------
GPULOGREG_HD float gl_exp(float x) { return expf(x); }
GPULOGREG_HD double gl_exp(double x) { return exp(x); }
GPULOGREG_HD float gl_log(float x) { return logf(x); }
GPULOGREG_HD double gl_log(double x) { return log(x); }
GPULOGREG_HD float gl_log1p(float x) { return log1pf(x); }
GPULOGREG_HD double gl_log1p(double x) { return log1p(x); }
GPULOGREG_HD float gl_abs(float x) { return fabsf(x); }
GPULOGREG_HD double gl_abs(double x) { return fabs(x); }
GPULOGREG_HD float gl_max(float a, float b) { return fmaxf(a, b); }
GPULOGREG_HD double gl_max(double a, double b) { return fmax(a, b); }

// -- binary (sigmoid) loss ----------------------------------------------------

// log(1 + exp(z)) without overflow.
template <typename R>
GPULOGREG_HD R log1pexp(R z) {
  return gl_max(z, R(0)) + gl_log1p(gl_exp(-gl_abs(z)));
}

// 1 / (1 + exp(-z)) without overflow.
template <typename R>
GPULOGREG_HD R sigmoid(R z) {
  const R e = gl_exp(-gl_abs(z));
  const R q = R(1) / (R(1) + e);
  return z >= R(0) ? q : e * q;
}

// Cross-entropy of label y in {0, 1} at decision value z:
// log(1 + exp(z)) - y z, as (max(z, 0) - y z) + log1p(exp(-|z|)).
template <typename R>
GPULOGREG_HD R logistic_loss(R z, R y) {
  return (gl_max(z, R(0)) - y * z) + gl_log1p(gl_exp(-gl_abs(z)));
}

// Residual p - y of label y in {0, 1} at decision value z (the derivative of
// logistic_loss in z), without cancellation when p is close to y.
template <typename R>
GPULOGREG_HD R logistic_residual(R z, R y) {
  const R e = gl_exp(-gl_abs(z));
  const R eq = e / (R(1) + e);  // = 1 - sigmoid(|z|)
  return z >= R(0) ? (R(1) - y) - eq : eq - y;
}

// Newton weight s p (1 - p) = s e / (1 + e)^2.
template <typename R>
GPULOGREG_HD R logistic_newton_weight(R z, R s) {
  const R e = gl_exp(-gl_abs(z));
  const R q = R(1) / (R(1) + e);
  return s * (e * q) * q;
}

// Weighted loss s * loss(z, y) and weighted residual s * (p - y) of one row,
// sharing one exp: what the fused loss-and-gradient kernel evaluates per row.
template <typename R>
struct LossResidual {
  R loss;
  R residual;
};

template <typename R>
GPULOGREG_HD LossResidual<R> weighted_logistic(R z, R y, R s) {
  const R e = gl_exp(-gl_abs(z));
  const R eq = e / (R(1) + e);
  LossResidual<R> out;
  out.loss = s * ((gl_max(z, R(0)) - y * z) + gl_log1p(e));
  out.residual = s * (z >= R(0) ? (R(1) - y) - eq : eq - y);
  return out;
}

// -- multinomial (softmax) loss -----------------------------------------------

// One term exp(z - zmax) of a softmax normaliser, with zmax the row's maximum
// (so the argument is <= 0 and the term is in (0, 1]).
template <typename R>
GPULOGREG_HD R softmax_term(R z, R zmax) {
  return gl_exp(z - zmax);
}

// Cross-entropy log(sum_k exp(z_k)) - zy of the true class, from its decision
// value zy, the row's maximum zmax and others = sum_{k != y} exp(z_k - zmax).
// When the true class holds the maximum its term is exactly 1 and the loss is
// log1p(others), accurate however small; otherwise the loss is at least
// zmax - zy > 0 and both of its terms are non-negative.
template <typename R>
GPULOGREG_HD R softmax_loss(R zy, R zmax, R others) {
  if (zy >= zmax) {
    return gl_log1p(others);
  }
  return (zmax - zy) + gl_log(gl_exp(zy - zmax) + others);
}

// Residual p_k - [k == y] of class k, from its term exp(z_k - zmax), the
// normaliser sumexp = sum_k exp(z_k - zmax) and others (as above). For the true
// class p_y - 1 = -others / sumexp: no cancellation when p_y is close to 1.
template <typename R>
GPULOGREG_HD R softmax_residual(R term, R sumexp, R others, bool is_true_class) {
  return is_true_class ? -others / sumexp : term / sumexp;
}

// Weighted residual s (p_k - [k == y]) with the row's one division done by
// the caller: scale = s / sumexp, then scale * term for k != y and
// -scale * others for the true class (no cancellation, as above). A kernel
// that loops over the classes calls this instead of s * softmax_residual(...),
// which divides once per class.
template <typename R>
GPULOGREG_HD R softmax_weighted_residual(R term, R scale, R others, bool is_true_class) {
  return scale * (is_true_class ? -others : term);
}

}  // namespace gpulogreg

#endif  // GPULOGREG_MATH_CUH
