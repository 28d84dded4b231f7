/**
 * Protocol detection on a fresh connection from its first bytes: the HTTP/2 connection preface
 * (RFC 9113 §3.4), a TLS ClientHello (record type 22), or else HTTP/1. The bytes read are pushed
 * back, so the chosen server sees the connection from its start.
 */
import type { Socket } from "node:net";

export type SniffedProtocol = "h2" | "tls" | "http1";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Reads the first bytes (as many as needed to decide, at most the preface length) and calls
 * `done` with the protocol; `onTimeout` if nothing decisive arrives within `timeoutMs`.
 */
export function sniff(
  socket: Socket,
  timeoutMs: number,
  done: (protocol: SniffedProtocol) => void,
  onTimeout: () => void,
): void {
  let buffered: Buffer | undefined;
  const timer = setTimeout(() => {
    cleanup();
    onTimeout();
  }, timeoutMs);
  const cleanup = () => {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("close", onClose);
  };
  const decide = (p: SniffedProtocol) => {
    cleanup();
    socket.pause();
    if (buffered !== undefined) socket.unshift(buffered);
    done(p);
  };
  const onClose = () => cleanup();
  const onData = (chunk: Buffer) => {
    buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
    if (buffered[0] === 22) return decide("tls");
    const n = Math.min(buffered.length, H2_PREFACE.length);
    if (buffered.compare(H2_PREFACE, 0, n, 0, n) !== 0) return decide("http1");
    if (n === H2_PREFACE.length) return decide("h2");
    // A prefix of the preface so far: wait for more.
  };
  socket.on("data", onData);
  socket.on("close", onClose);
}
