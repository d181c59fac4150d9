// Step prologue: the batch's rows, labels and row weights gathered from the device step counter.
//
// Batch p of the epoch (p = pos[0], set by the host at the epoch's start and advanced by the
// update kernel) holds rows order[p * batch + r] for r < rows (shuffled), or rows p * batch + r.
// Item 0 also writes this step's scalars for the update: step[0] = the learning rate of the
// epoch's step p (sched[1 + p]), step[1] = the optimizer's step count t, 1-based (sched[0] + p + 1).
// One work item per element of Xb: (rows * cols) items.
KERNEL void gather(const real* __restrict__ X, const long long* __restrict__ L, const real* __restrict__ W,
                   const long long* __restrict__ order, const long long* __restrict__ pos,
                   const double* __restrict__ sched, long long batch, long long rows, long long cols,
                   int shuffled, int weighted, real* __restrict__ Xb, long long* __restrict__ Lb,
                   real* __restrict__ Wb, double* __restrict__ step) {
    const long long p = pos[0];
    const long long first = p * batch;
    FOR_EACH(i, rows * cols) {
        const long long r = i / cols;
        const long long c = i - r * cols;
        const long long src = shuffled ? order[first + r] : first + r;
        Xb[i] = X[src * cols + c];
        if (c == 0) {
            Lb[r] = L[src];
            if (weighted) Wb[r] = W[src];
        }
        if (i == 0) {
            step[0] = sched[1 + p];
            step[1] = sched[0] + (double)(p + 1);
        }
    }
}
