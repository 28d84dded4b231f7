/** Hooks that do nothing (tests, benchmarks of the bare path). */
export const NO_HOOKS = {
    inbound: () => { },
    outbound: () => { },
    retry: () => { },
    retryBudgetExhausted: () => { },
    outlierEjection: () => { },
    panic: () => { },
    error: () => { },
};
