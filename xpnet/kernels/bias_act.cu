// A hidden layer's forward after its product: Z <- f(Z + b), in place; Z (rows, cols), b (cols,).
// act: 0 identity, 1 relu, 2 leaky_relu (slope 0.01), 3 tanh, 4 sigmoid (exp only of -|z|).
// One work item per element.
KERNEL void bias_act(real* __restrict__ Z, const real* __restrict__ b, long long rows, long long cols, int act) {
    FOR_EACH(i, rows * cols) {
        const real z = Z[i] + b[i % cols];
        real a = z;
        if (act == 1) {
            a = z > (real)0 ? z : (real)0;
        } else if (act == 2) {
            a = z > (real)0 ? z : (real)0.01 * z;
        } else if (act == 3) {
            a = TANH(z);
        } else if (act == 4) {
            const real e = EXP(-FABS(z));
            a = z >= (real)0 ? (real)1 / ((real)1 + e) : e / ((real)1 + e);
        }
        Z[i] = a;
    }
}
