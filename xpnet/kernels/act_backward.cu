// A hidden layer's backward through its activation, written in terms of its output A:
// dA <- dA * f'(A), in place (dA becomes dZ); both (rows * cols,) = n elements.
// act as in bias_act: identity dA; relu dA where A > 0; leaky_relu dA or 0.01 dA;
// tanh dA (1 - A^2); sigmoid dA A (1 - A). One work item per element.
KERNEL void act_backward(real* __restrict__ dA, const real* __restrict__ A, long long n, int act) {
    FOR_EACH(i, n) {
        const real a = A[i];
        const real d = dA[i];
        real g = d;
        if (act == 1) {
            g = a > (real)0 ? d : (real)0;
        } else if (act == 2) {
            g = a > (real)0 ? d : (real)0.01 * d;
        } else if (act == 3) {
            g = d * ((real)1 - a * a);
        } else if (act == 4) {
            g = d * a * ((real)1 - a);
        }
        dA[i] = g;
    }
}
