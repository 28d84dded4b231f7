const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/**
 * Reads the first bytes (as many as needed to decide, at most the preface length) and calls
 * `done` with the protocol; `onTimeout` if nothing decisive arrives within `timeoutMs`.
 */
export function sniff(socket, timeoutMs, done, onTimeout) {
    let buffered;
    const timer = setTimeout(() => {
        cleanup();
        onTimeout();
    }, timeoutMs);
    const cleanup = () => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("close", onClose);
    };
    const decide = (p) => {
        cleanup();
        socket.pause();
        if (buffered !== undefined)
            socket.unshift(buffered);
        done(p);
    };
    const onClose = () => cleanup();
    const onData = (chunk) => {
        buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
        if (buffered[0] === 22)
            return decide("tls");
        const n = Math.min(buffered.length, H2_PREFACE.length);
        if (buffered.compare(H2_PREFACE, 0, n, 0, n) !== 0)
            return decide("http1");
        if (n === H2_PREFACE.length)
            return decide("h2");
        // A prefix of the preface so far: wait for more.
    };
    socket.on("data", onData);
    socket.on("close", onClose);
}
