// jvideo fused CUDA kernels. Pasted into every jt.code op as cuda_header; the host launchers
// (`*_cuda`) are what the ops' cuda_src call, with Jittor's device pointers.
//
// Norms: one block per row (or per (sample, group)), warp-shuffle reductions, two-pass
// variance. Parameter gradients: per-chunk partial sums (K, P, C), coalesced over columns,
// summed by the caller. Attention: one thread per query row, keys streamed through shared
// memory tiles with an online softmax (no L x S matrix); backward recomputes the
// probabilities from the saved log-sum-exp and accumulates dK/dV with atomics.
#pragma once
#include <cstdio>
#include <cuda_runtime.h>
#include <math.h>

namespace jv {

constexpr int NT = 256;  // threads per block for row kernels

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block; every thread gets the result. `sh` holds NT / 32 floats.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  float t = (threadIdx.x < (blockDim.x >> 5)) ? sh[threadIdx.x] : 0.f;
  if (wid == 0) t = warp_sum(t);
  if (threadIdx.x == 0) sh[0] = t;
  __syncthreads();
  return sh[0];
}

__device__ __forceinline__ float gelu_f(float u) {
  const float z = 0.7978845608028654f * (u + 0.044715f * u * u * u);
  return u / (1.0f + __expf(-2.0f * z));
}
__device__ __forceinline__ float gelu_grad_f(float u) {
  const float z = 0.7978845608028654f * (u + 0.044715f * u * u * u);
  const float s = 1.0f / (1.0f + __expf(-2.0f * z));
  const float dz = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * u * u);
  return s + u * s * (1.0f - s) * 2.0f * dz;
}
__device__ __forceinline__ float sigmoid_f(float u) { return 1.0f / (1.0f + __expf(-u)); }

static inline int cdiv(long a, long b) { return (int)((a + b - 1) / b); }

// ---------------------------------------------------------------------------------------------
// Row norms: y = xhat * S[p] + T[p]; see jv_cpu.h.
template <bool CENTER>
__global__ void rownorm_fwd_k(const float* x, const float* S, const float* T, float* y,
                              float* mean, float* rstd, long R, int C, long P, float eps) {
  __shared__ float sh[32];
  const long r = blockIdx.x;
  const long G = R / P;
  const float* xr = x + r * C;
  float s = 0.f;
  if (CENTER)
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
  const float mu = CENTER ? block_sum(s, sh) / C : 0.f;
  float v = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = xr[c] - mu; v += d * d; }
  const float rs = rsqrtf(block_sum(v, sh) / C + eps);
  const float* Sr = S + (r / G) * C;
  const float* Tr = T + (r / G) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[r * C + c] = (xr[c] - mu) * rs * Sr[c] + Tr[c];
  if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = rs; }
}

template <bool CENTER>
__global__ void rownorm_dx_k(const float* x, const float* mean, const float* rstd, const float* S,
                             const float* dy, float* dx, long R, int C, long P) {
  __shared__ float sh[32];
  const long r = blockIdx.x;
  const long G = R / P;
  const float* Sr = S + (r / G) * C;
  const float mu = mean[r], rs = rstd[r];
  float a = 0.f, b = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xh = (x[r * C + c] - mu) * rs, g = dy[r * C + c] * Sr[c];
    a += g;
    b += g * xh;
  }
  a = CENTER ? block_sum(a, sh) / C : 0.f;
  b = block_sum(b, sh) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xh = (x[r * C + c] - mu) * rs;
    dx[r * C + c] = (dy[r * C + c] * Sr[c] - a - xh * b) * rs;
  }
}

// grid (ceil(C / NT), K): partial dS, dT for rows of chunk k.
__global__ void rownorm_dparam_k(const float* x, const float* mean, const float* rstd,
                                 const float* dy, float* dSp, float* dTp, long R, int C, long P,
                                 int K) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
  if (c >= C) return;
  const long G = R / P;
  float* dS = dSp + (long)k * P * C;
  float* dT = dTp + (long)k * P * C;
  for (long p = 0; p < P; p++) { dS[p * C + c] = 0.f; dT[p * C + c] = 0.f; }
  for (long r = R * k / K; r < R * (k + 1) / K; r++) {
    const float g = dy[r * C + c];
    dS[(r / G) * C + c] += g * (x[r * C + c] - mean[r]) * rstd[r];
    dT[(r / G) * C + c] += g;
  }
}

template <bool CENTER>
void rownorm_fwd_cuda(const float* x, const float* S, const float* T, float* y, float* mean,
                      float* rstd, long R, int C, long P, float eps) {
  if (R > 0) rownorm_fwd_k<CENTER><<<R, NT>>>(x, S, T, y, mean, rstd, R, C, P, eps);
}

template <bool CENTER>
void rownorm_bwd_cuda(const float* x, const float* mean, const float* rstd, const float* S,
                      const float* dy, float* dx, float* dSp, float* dTp, long R, int C, long P,
                      int K) {
  if (R > 0) rownorm_dx_k<CENTER><<<R, NT>>>(x, mean, rstd, S, dy, dx, R, C, P);
  rownorm_dparam_k<<<dim3(cdiv(C, NT), K), NT>>>(x, mean, rstd, dy, dSp, dTp, R, C, P, K);
}

// ---------------------------------------------------------------------------------------------
// Gated residual + LN-modulate; see jv_cpu.h.
__global__ void residual_lnmod_fwd_k(const float* x, const float* gate, const float* y,
                                     const float* S, const float* T, float* xn, float* h,
                                     float* mean, float* rstd, long R, int C, long B, float eps) {
  __shared__ float sh[32];
  const long r = blockIdx.x, b = r / (R / B);
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = x[r * C + c] + gate[b * C + c] * y[r * C + c];
    xn[r * C + c] = v;
    s += v;
  }
  const float mu = block_sum(s, sh) / C;  // block_sum syncs: xn writes are visible
  float v2 = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = xn[r * C + c] - mu; v2 += d * d; }
  const float rs = rsqrtf(block_sum(v2, sh) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    h[r * C + c] = (xn[r * C + c] - mu) * rs * S[b * C + c] + T[b * C + c];
  if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = rs; }
}

__global__ void residual_lnmod_dx_k(const float* xn, const float* mean, const float* rstd,
                                    const float* gate, const float* S, const float* dxn,
                                    const float* dh, float* dx, float* dy, long R, int C, long B) {
  __shared__ float sh[32];
  const long r = blockIdx.x, b = r / (R / B);
  const float mu = mean[r], rs = rstd[r];
  float a = 0.f, bb = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xh = (xn[r * C + c] - mu) * rs, d = dh[r * C + c] * S[b * C + c];
    a += d;
    bb += d * xh;
  }
  a = block_sum(a, sh) / C;
  bb = block_sum(bb, sh) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xh = (xn[r * C + c] - mu) * rs;
    const float t = dxn[r * C + c] + (dh[r * C + c] * S[b * C + c] - a - xh * bb) * rs;
    dx[r * C + c] = t;
    dy[r * C + c] = t * gate[b * C + c];
  }
}

__global__ void residual_lnmod_dparam_k(const float* xn, const float* mean, const float* rstd,
                                        const float* y, const float* dx, const float* dh,
                                        float* dgp, float* dSp, float* dTp, long R, int C, long B,
                                        int K) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
  if (c >= C) return;
  const long N = R / B;
  float *dg = dgp + (long)k * B * C, *dS = dSp + (long)k * B * C, *dT = dTp + (long)k * B * C;
  for (long b = 0; b < B; b++) { dg[b * C + c] = 0.f; dS[b * C + c] = 0.f; dT[b * C + c] = 0.f; }
  for (long r = R * k / K; r < R * (k + 1) / K; r++) {
    const long i = (r / N) * C + c;
    const float d = dh[r * C + c];
    dg[i] += dx[r * C + c] * y[r * C + c];  // dx holds t = total grad of xn
    dS[i] += d * (xn[r * C + c] - mean[r]) * rstd[r];
    dT[i] += d;
  }
}

void residual_lnmod_fwd_cuda(const float* x, const float* gate, const float* y, const float* S,
                             const float* T, float* xn, float* h, float* mean, float* rstd, long R,
                             int C, long B, float eps) {
  if (R > 0) residual_lnmod_fwd_k<<<R, NT>>>(x, gate, y, S, T, xn, h, mean, rstd, R, C, B, eps);
}
void residual_lnmod_bwd_cuda(const float* xn, const float* mean, const float* rstd,
                             const float* gate, const float* y, const float* S, const float* dxn,
                             const float* dh, float* dx, float* dy, float* dgp, float* dSp,
                             float* dTp, long R, int C, long B, int K) {
  if (R > 0) residual_lnmod_dx_k<<<R, NT>>>(xn, mean, rstd, gate, S, dxn, dh, dx, dy, R, C, B);
  residual_lnmod_dparam_k<<<dim3(cdiv(C, NT), K), NT>>>(xn, mean, rstd, y, dx, dh, dgp, dSp, dTp,
                                                         R, C, B, K);
}

// ---------------------------------------------------------------------------------------------
// bias + GELU(tanh)
__global__ void bias_gelu_fwd_k(const float* x, const float* bias, float* y, long n, int C) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = gelu_f(x[i] + bias[i % C]);
}
__global__ void bias_gelu_bwd_k(const float* x, const float* bias, const float* dy, float* dx,
                                float* dbp, long R, int C, int K) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
  if (c >= C) return;
  float acc = 0.f;
  for (long r = R * k / K; r < R * (k + 1) / K; r++) {
    const float g = dy[r * C + c] * gelu_grad_f(x[r * C + c] + bias[c]);
    dx[r * C + c] = g;
    acc += g;
  }
  dbp[(long)k * C + c] = acc;
}
void bias_gelu_fwd_cuda(const float* x, const float* bias, float* y, long R, int C) {
  const long n = R * C;
  if (n > 0) bias_gelu_fwd_k<<<min(cdiv(n, NT), 65535), NT>>>(x, bias, y, n, C);
}
void bias_gelu_bwd_cuda(const float* x, const float* bias, const float* dy, float* dx, float* dbp,
                        long R, int C, int K) {
  bias_gelu_bwd_k<<<dim3(cdiv(C, NT), K), NT>>>(x, bias, dy, dx, dbp, R, C, K);
}

// ---------------------------------------------------------------------------------------------
// gated residual
__global__ void gated_residual_fwd_k(const float* x, const float* gate, const float* y, float* out,
                                     long n, int C, long NC) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    out[i] = x[i] + gate[(i / NC) * C + i % C] * y[i];
}
__global__ void gated_residual_bwd_k(const float* dout, const float* gate, const float* y,
                                     float* dy, float* dgp, long R, int C, long B, int K) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
  if (c >= C) return;
  const long N = R / B;
  float* dg = dgp + (long)k * B * C;
  for (long b = 0; b < B; b++) dg[b * C + c] = 0.f;
  for (long r = R * k / K; r < R * (k + 1) / K; r++) {
    const float d = dout[r * C + c];
    dy[r * C + c] = d * gate[(r / N) * C + c];
    dg[(r / N) * C + c] += d * y[r * C + c];
  }
}
void gated_residual_fwd_cuda(const float* x, const float* gate, const float* y, float* out, long R,
                             int C, long B) {
  const long n = R * C;
  if (n > 0) gated_residual_fwd_k<<<min(cdiv(n, NT), 65535), NT>>>(x, gate, y, out, n, C, (R / B) * C);
}
void gated_residual_bwd_cuda(const float* dout, const float* gate, const float* y, float* dy,
                             float* dgp, long R, int C, long B, int K) {
  gated_residual_bwd_k<<<dim3(cdiv(C, NT), K), NT>>>(dout, gate, y, dy, dgp, R, C, B, K);
}

// ---------------------------------------------------------------------------------------------
// GroupNorm (+SiLU): one block per (sample, group), contiguous block of M = Cg * Sp values.
__global__ void group_norm_fwd_k(const float* x, const float* w, const float* b, float* y,
                                 float* mean, float* rstd, int C, long Sp, int G, float eps,
                                 bool silu) {
  __shared__ float sh[32];
  const long t = blockIdx.x;
  const int Cg = C / G, g = t % G;
  const long M = (long)Cg * Sp, base = t * M;
  float s = 0.f;
  for (long i = threadIdx.x; i < M; i += blockDim.x) s += x[base + i];
  const float mu = block_sum(s, sh) / M;
  float v = 0.f;
  for (long i = threadIdx.x; i < M; i += blockDim.x) { float d = x[base + i] - mu; v += d * d; }
  const float rs = rsqrtf(block_sum(v, sh) / M + eps);
  for (long i = threadIdx.x; i < M; i += blockDim.x) {
    const int c = g * Cg + (int)(i / Sp);
    float z = (x[base + i] - mu) * rs * w[c] + b[c];
    y[base + i] = silu ? z * sigmoid_f(z) : z;
  }
  if (threadIdx.x == 0) { mean[t] = mu; rstd[t] = rs; }
}

__global__ void group_norm_bwd_k(const float* x, const float* w, const float* b, const float* mean,
                                 const float* rstd, const float* dy, float* dx, float* dwp,
                                 float* dbp, int C, long Sp, int G, bool silu) {
  __shared__ float sh[32];
  const long t = blockIdx.x;
  const int Cg = C / G, g = t % G, n = t / G;
  const long M = (long)Cg * Sp, base = t * M;
  const float mu = mean[t], rs = rstd[t];
  float A = 0.f, Bs = 0.f;
  for (int cc = 0; cc < Cg; cc++) {
    const int c = g * Cg + cc;
    float sdz = 0.f, sdzx = 0.f;
    for (long j = threadIdx.x; j < Sp; j += blockDim.x) {
      const long i = base + cc * Sp + j;
      const float xh = (x[i] - mu) * rs;
      float dz = dy[i];
      if (silu) {
        const float z = xh * w[c] + b[c], s = sigmoid_f(z);
        dz *= s * (1.0f + z * (1.0f - s));
      }
      dx[i] = dz;
      sdz += dz;
      sdzx += dz * xh;
    }
    sdz = block_sum(sdz, sh);
    sdzx = block_sum(sdzx, sh);
    if (threadIdx.x == 0) { dwp[(long)n * C + c] = sdzx; dbp[(long)n * C + c] = sdz; }
    A += sdz * w[c];
    Bs += sdzx * w[c];
  }
  A /= M;
  Bs /= M;
  for (long i = threadIdx.x; i < M; i += blockDim.x) {
    const int c = g * Cg + (int)(i / Sp);
    const float xh = (x[base + i] - mu) * rs;
    dx[base + i] = rs * (dx[base + i] * w[c] - A - xh * Bs);
  }
}

void group_norm_fwd_cuda(const float* x, const float* w, const float* b, float* y, float* mean,
                         float* rstd, int N, int C, long Sp, int G, float eps, bool silu) {
  if (N * G > 0) group_norm_fwd_k<<<N * G, NT>>>(x, w, b, y, mean, rstd, C, Sp, G, eps, silu);
}
void group_norm_bwd_cuda(const float* x, const float* w, const float* b, const float* mean,
                         const float* rstd, const float* dy, float* dx, float* dwp, float* dbp,
                         int N, int C, long Sp, int G, bool silu) {
  if (N * G > 0)
    group_norm_bwd_k<<<N * G, NT>>>(x, w, b, mean, rstd, dy, dx, dwp, dbp, C, Sp, G, silu);
}

// ---------------------------------------------------------------------------------------------
// Attention: one thread per query row, TK keys per shared-memory tile, head dim <= DMAX.
constexpr int DMAX = 128, TQ = 64, TK = 32;

__global__ void attn_fwd_k(const float* q, const float* k, const float* v, float* o, float* lse,
                           int L, int S, int D, float scale) {
  __shared__ float Ks[TK][DMAX], Vs[TK][DMAX];
  const long bh = blockIdx.y;
  const int i = blockIdx.x * TQ + threadIdx.x;
  const bool live = i < L;
  float qr[DMAX], acc[DMAX];
  for (int d = 0; d < D; d++) { qr[d] = live ? q[(bh * L + i) * D + d] * scale : 0.f; acc[d] = 0.f; }
  float m = -1e30f, l = 0.f;
  for (int j0 = 0; j0 < S; j0 += TK) {
    const int cols = min(TK, S - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < TK * D; e += blockDim.x) {
      const int jj = e / D, d = e % D;
      Ks[jj][d] = jj < cols ? k[(bh * S + j0 + jj) * D + d] : 0.f;
      Vs[jj][d] = jj < cols ? v[(bh * S + j0 + jj) * D + d] : 0.f;
    }
    __syncthreads();
    for (int jj = 0; jj < cols; jj++) {
      float s = 0.f;
      for (int d = 0; d < D; d++) s += qr[d] * Ks[jj][d];
      const float mnew = fmaxf(m, s), alpha = __expf(m - mnew), p = __expf(s - mnew);
      l = l * alpha + p;
      for (int d = 0; d < D; d++) acc[d] = acc[d] * alpha + p * Vs[jj][d];
      m = mnew;
    }
  }
  if (live) {
    for (int d = 0; d < D; d++) o[(bh * L + i) * D + d] = acc[d] / l;
    lse[bh * L + i] = m + logf(l);
  }
}

// dq per thread; dk, dv accumulated with atomics (zeroed by the launcher).
__global__ void attn_bwd_k(const float* q, const float* k, const float* v, const float* lse,
                           const float* Di, const float* dout, float* dq, float* dk, float* dv,
                           int L, int S, int D, float scale) {
  const long bh = blockIdx.y;
  const int i = blockIdx.x * TQ + threadIdx.x;
  if (i >= L) return;
  float qr[DMAX], dor[DMAX], dqr[DMAX];
  for (int d = 0; d < D; d++) {
    qr[d] = q[(bh * L + i) * D + d] * scale;
    dor[d] = dout[(bh * L + i) * D + d];
    dqr[d] = 0.f;
  }
  const float li = lse[bh * L + i], di = Di[bh * L + i];
  for (int j = 0; j < S; j++) {
    const float* kj = k + (bh * S + j) * D;
    const float* vj = v + (bh * S + j) * D;
    float s = 0.f, dp = 0.f;
    for (int d = 0; d < D; d++) { s += qr[d] * kj[d]; dp += dor[d] * vj[d]; }
    const float p = __expf(s - li), ds = p * (dp - di);
    for (int d = 0; d < D; d++) {
      dqr[d] += ds * kj[d];
      atomicAdd(dv + (bh * S + j) * D + d, p * dor[d]);
      atomicAdd(dk + (bh * S + j) * D + d, ds * qr[d]);
    }
  }
  for (int d = 0; d < D; d++) dq[(bh * L + i) * D + d] = dqr[d] * scale;
}

void attn_fwd_cuda(const float* q, const float* k, const float* v, float* o, float* lse, int BH,
                   int L, int S, int D, float scale) {
  if (D > DMAX) { fprintf(stderr, "jvideo attention: head dim %d > %d on CUDA\n", D, DMAX); return; }
  attn_fwd_k<<<dim3(cdiv(L, TQ), BH), TQ>>>(q, k, v, o, lse, L, S, D, scale);
}
void attn_bwd_cuda(const float* q, const float* k, const float* v, const float* lse,
                   const float* Di, const float* dout, float* dq, float* dk, float* dv, int BH,
                   int L, int S, int D, float scale) {
  if (D > DMAX) { fprintf(stderr, "jvideo attention: head dim %d > %d on CUDA\n", D, DMAX); return; }
  cudaMemsetAsync(dk, 0, sizeof(float) * BH * S * D);
  cudaMemsetAsync(dv, 0, sizeof(float) * BH * S * D);
  attn_bwd_k<<<dim3(cdiv(L, TQ), BH), TQ>>>(q, k, v, lse, Di, dout, dq, dk, dv, L, S, D, scale);
}

}  // namespace jv
