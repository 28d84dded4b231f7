/**
 * TLS for gRPC clients of the control plane (the CLI and the sidecars' discovery client), in one
 * place: trust exactly the given CA bundle, and work around grpc-js sending an IP literal as the
 * TLS server name (Node warns, DEP0123; RFC 6066 §3 forbids IPs in SNI): for IP targets a
 * placeholder SNI is sent and the certificate is still checked against the real IP.
 */
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, TrellisError } from "./errors.js";

const IP_TARGET_SNI = "trellis-control-plane.invalid";

export interface TlsChannel {
  credentials: grpc.ChannelCredentials;
  /** Channel options to pass to the client (the SNI override for IP targets). */
  options: grpc.ChannelOptions;
}

/** Credentials and options to dial `address` (host:port) trusting `caPem`. Throws CONFIG for a bad bundle. */
export function controlPlaneChannel(address: string, caPem: string): TlsChannel {
  const host = hostOf(address);
  const ipTarget = isIP(host) !== 0;
  try {
    const credentials = grpc.credentials.createSsl(
      Buffer.from(caPem),
      null,
      null,
      ipTarget
        ? { checkServerIdentity: (_sni: string, cert: PeerCertificate) => checkServerIdentity(host, cert) }
        : {},
    );
    return { credentials, options: ipTarget ? { "grpc.ssl_target_name_override": IP_TARGET_SNI } : {} };
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `the CA bundle is not usable: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** The host part of `host:port` or `[v6]:port`. */
export function hostOf(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end > 0 ? address.slice(1, end) : address;
  }
  const colon = address.lastIndexOf(":");
  return colon > 0 && address.indexOf(":") === colon ? address.slice(0, colon) : address;
}
