export class Backoff {
    attempt = 0;
    baseMs;
    maxMs;
    random;
    constructor(opts = {}) {
        this.baseMs = opts.baseMs ?? 100;
        this.maxMs = opts.maxMs ?? 10_000;
        this.random = opts.random ?? Math.random;
    }
    /** The next delay in ms. */
    next() {
        const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
        this.attempt++;
        return Math.floor(this.random() * ceiling);
    }
    /** After a success: start again from the base. */
    reset() {
        this.attempt = 0;
    }
}
