// SGD over the flat buffer, PyTorch's rule, one work item per element:
//   g = G + wd P  (the n_decay leading elements: the weights)
//   V = mu V + g;  g = g + mu V (nesterov) or V   (mu > 0)
//   P = P - lr g,  lr = step[0] (written by gather)
// A non-finite result sets bad[0] = 1 (the epoch's weight check, read once per epoch),
// and item 0 advances the step counter pos[0], which no other item of this kernel reads.
KERNEL void sgd(real* __restrict__ P, const real* __restrict__ G, real* __restrict__ V,
                const double* __restrict__ step, long long n, long long n_decay, double momentum,
                double weight_decay, int nesterov, long long* __restrict__ pos, double* __restrict__ bad) {
    const real lr = (real)step[0];
    const real mu = (real)momentum;
    const real wd = (real)weight_decay;
    FOR_EACH(i, n) {
        real g = G[i];
        if (i < n_decay && weight_decay != 0.0) g = P[i] * wd + g;
        if (momentum != 0.0) {
            const real v = V[i] * mu + g;
            V[i] = v;
            g = nesterov ? v * mu + g : v;
        }
        const real p = P[i] - g * lr;
        P[i] = p;
        if (!IS_FINITE(p)) bad[0] = 1.0;
        if (i == 0) pos[0] += 1;
    }
}
