// The softmax cross-entropy head of one step, a row per work item.
//
// Z (rows, k) holds the last product A @ W, without its bias b (k,). Per row r with class
// L[r] and targets y_j = (1 - eps) [j == L[r]] + eps / k (eps: label smoothing, 0 for none):
//   z_j = Z[r, j] + b_j;  s_j = z_j - max_j z_j;  T = sum_j exp(s_j);  p_j = exp(s_j) / T
//   loss_r = sum_j y_j (log T - s_j)
//   dZ[r, j] = (p_j - y_j) * scale * w_r      (written over Z; w_r = W[r], or 1 unweighted)
// The step's loss, sum_r w_r loss_r, is added (in double) to losses[pos[0]], and the row counts
// as correct, in correct[0], when its first largest z_j is its class.
KERNEL void softmax_xent(real* __restrict__ Z, const real* __restrict__ b, const long long* __restrict__ L,
                         const real* __restrict__ W, const long long* __restrict__ pos, long long rows,
                         long long k, double eps, double scale, int weighted, double* __restrict__ losses,
                         double* __restrict__ correct) {
    const real off = (real)(eps / (double)k);
    const real on = (real)(1.0 - eps);
    FOR_EACH(r, rows) {
        real* z = Z + r * k;
        real top = z[0] + b[0];
        long long arg = 0;
        for (long long j = 1; j < k; ++j) {
            const real v = z[j] + b[j];
            if (v > top) {
                top = v;
                arg = j;
            }
        }
        real total = (real)0;
        for (long long j = 0; j < k; ++j) {
            const real s = (z[j] + b[j]) - top;
            z[j] = s;  // shifted logits, for the loss below
            total += EXP(s);
        }
        const real lt = LOG(total);
        const long long label = L[r];
        const real w = weighted ? W[r] : (real)1;
        real loss = (real)0;
        for (long long j = 0; j < k; ++j) {
            const real s = z[j];
            const real y = (j == label ? on : (real)0) + off;
            loss += y * (lt - s);
            z[j] = ((EXP(s) / total - y) * (real)scale) * w;
        }
        ATOMIC_ADD(losses + pos[0], (double)(w * loss));
        if (arg == label) ATOMIC_ADD(correct, 1.0);
    }
}
