// AdamW over the flat buffer (PyTorch's AdamW), one work item per element, with t = step[1]:
//   M = b1 M + (1 - b1) G;  V = b2 V + (1 - b2) G^2
//   P = P (1 - lr wd)                          (the n_decay leading elements: the weights)
//   P = P - c M / (sqrt(V) + eps sqrt(1 - b2^t)),  c = lr sqrt(1 - b2^t) / (1 - b1^t)
// the same numbers as xpnet.optim.Adam's generic update, each rounded in the same order.
// A non-finite result sets bad[0] = 1.0; item 0 advances the step counter pos[0].
KERNEL void adam(real* __restrict__ P, const real* __restrict__ G, real* __restrict__ M, real* __restrict__ V,
                 const double* __restrict__ step, long long n, long long n_decay, double beta1, double beta2,
                 double eps, double weight_decay, long long* __restrict__ pos, double* __restrict__ bad) {
    const double lr = step[0];
    const double t = step[1];
    const double root = sqrt(1.0 - pow(beta2, t));
    const real c = (real)(lr * root / (1.0 - pow(beta1, t)));
    const real e = (real)(eps * root);
    const real shrink = (real)(1.0 - lr * weight_decay);
    const real b1 = (real)beta1, b2 = (real)beta2;
    const real c1 = (real)(1.0 - beta1), c2 = (real)(1.0 - beta2);
    FOR_EACH(i, n) {
        const real g = G[i];
        const real m = M[i] * b1 + g * c1;
        const real v = V[i] * b2 + (g * g) * c2;
        M[i] = m;
        V[i] = v;
        real p = P[i];
        if (i < n_decay && weight_decay != 0.0) p = p * shrink;
        p = p - (m / (SQRT(v) + e)) * c;
        P[i] = p;
        if (!IS_FINITE(p)) bad[0] = 1.0;
        if (i == 0) pos[0] += 1;
    }
}
