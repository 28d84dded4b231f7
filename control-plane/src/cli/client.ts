/**
 * How the CLI reaches the control plane's admin API: gRPC over TLS to 15010, authenticated with the
 * admin token as `authorization: Bearer <token>`.
 *
 * Where each setting comes from, first match wins (the way kubectl reads a kubeconfig):
 *   - address: `--control-plane`, `TRELLIS_CONTROL_PLANE` (the first entry of a comma-separated
 *     list), `~/.trellis/config`, else 127.0.0.1:15010;
 *   - CA bundle: `--ca-file`, else the CA in `~/.trellis/config`;
 *   - admin token: `--admin-token-file`, `TRELLIS_ADMIN_TOKEN`, else the token in `~/.trellis/config`.
 * Every control-plane replica writes `~/.trellis/config` on its machine, so a CLI there needs no
 * flags at all.
 *
 * Failures are TrellisErrors with one-line messages meant for the terminal: CONFIG for missing or
 * unreadable settings ("no admin token: …"), UNAVAILABLE for "cannot reach the control plane at
 * X: …", UNAUTHENTICATED when the token is refused; server errors keep the server's message.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { AdminService } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { GrpcCallOptions, GrpcClient } from "@trellis/proto/grpc-adapter";
import { createGrpcClient, fromGrpcError } from "@trellis/proto/grpc-adapter";
import { controlPlaneChannel } from "@trellis/proto/grpc-tls";
import type { Command } from "commander";
import { bearerAuthorization } from "../security/admin-auth.js";
import type { ClientConfig } from "../security/bootstrap.js";
import { clientConfigPath, readClientConfig } from "../security/bootstrap.js";

/** The address used when nothing else names one. */
export const DEFAULT_CONTROL_PLANE = "127.0.0.1:15010";

/** Per-call deadline of admin calls, in ms. */
export const ADMIN_CALL_TIMEOUT_MS = 30_000;

/** The global flags (see `addConnectionOptions`). */
export interface ConnectionFlags {
  controlPlane?: string;
  caFile?: string;
  adminTokenFile?: string;
}

/** Where and how to connect, resolved from flags, environment and `~/.trellis/config`. */
export interface ConnectionSettings {
  address: string;
  caPem: string;
  token: string;
}

/** Adds `--control-plane`, `--ca-file` and `--admin-token-file` to the program (global options). */
export function addConnectionOptions(program: Command): Command {
  return program
    .option(
      "--control-plane <host:port>",
      `control plane gRPC address (env TRELLIS_CONTROL_PLANE; default from ~/.trellis/config, else ${DEFAULT_CONTROL_PLANE})`,
    )
    .option(
      "--ca-file <path>",
      "CA bundle that verifies the control plane (default: the CA in ~/.trellis/config)",
    )
    .option(
      "--admin-token-file <path>",
      "file holding the admin token (env TRELLIS_ADMIN_TOKEN; default: the token in ~/.trellis/config)",
    );
}

/** The connection flags of the command being run (global options included). */
export function connectionFlags(cmd: Command): ConnectionFlags {
  const o = cmd.optsWithGlobals<Record<string, unknown>>();
  const flags: ConnectionFlags = {};
  if (typeof o.controlPlane === "string") flags.controlPlane = o.controlPlane;
  if (typeof o.caFile === "string") flags.caFile = o.caFile;
  if (typeof o.adminTokenFile === "string") flags.adminTokenFile = o.adminTokenFile;
  return flags;
}

/**
 * Resolves address, CA and token. `~/.trellis/config` (under `home`) is read only when a flag or
 * the environment leaves something open. Throws TrellisError CONFIG naming what is missing.
 */
export async function resolveConnection(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
): Promise<ConnectionSettings> {
  let config: ClientConfig | undefined;
  let configRead = false;
  const fromConfig = async (): Promise<ClientConfig | undefined> => {
    if (!configRead) {
      configRead = true;
      config = await readClientConfig(home);
    }
    return config;
  };

  const envAddress = env.TRELLIS_CONTROL_PLANE?.split(",")
    .map((s) => s.trim())
    .find((s) => s.length > 0);
  const address =
    flags.controlPlane || envAddress || (await fromConfig())?.controlPlane || DEFAULT_CONTROL_PLANE;

  let caPem: string | undefined;
  if (flags.caFile) caPem = await readSetting(flags.caFile, "--ca-file");
  else caPem = (await fromConfig())?.caPem;
  if (caPem === undefined) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `no CA certificate to verify the control plane at ${address}: pass --ca-file <state-dir>/ca.pem ` +
        `(every control-plane replica writes it), or run where a replica wrote ${clientConfigPath(home)}`,
    );
  }

  let token: string | undefined;
  if (flags.adminTokenFile) token = await readSetting(flags.adminTokenFile, "--admin-token-file");
  else if (env.TRELLIS_ADMIN_TOKEN?.trim()) token = env.TRELLIS_ADMIN_TOKEN.trim();
  else token = (await fromConfig())?.token;
  if (token === undefined) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      "no admin token: pass --admin-token-file or set TRELLIS_ADMIN_TOKEN " +
        `(a control-plane replica writes the token into ${clientConfigPath(home)} on its machine)`,
    );
  }
  return { address, caPem, token };
}

async function readSetting(path: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `${flag}: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const trimmed = text.trim();
  if (trimmed.length === 0) throw new TrellisError(ErrorCode.CONFIG, `${flag}: ${path} is empty`);
  return trimmed;
}

/** An open connection to the admin API. The caller must `close()` it. */
export interface AdminConnection {
  readonly address: string;
  /**
   * Runs one call with the admin token and the call deadline attached; failures come back as
   * TrellisErrors with terminal-ready messages (see the module comment).
   */
  call<T>(fn: (client: GrpcClient<typeof AdminService>, opts: GrpcCallOptions) => Promise<T>): Promise<T>;
  close(): void;
}

/** Opens a TLS channel to the admin API (the channel connects lazily, on the first call). */
export function openAdminConnection(settings: ConnectionSettings): AdminConnection {
  const { credentials, options } = controlPlaneChannel(settings.address, settings.caPem);
  const client = createGrpcClient(AdminService, settings.address, credentials, {
    defaultTimeoutMs: ADMIN_CALL_TIMEOUT_MS,
    ...options,
  });
  const metadata = { authorization: bearerAuthorization(settings.token) };
  return {
    address: settings.address,
    async call(fn) {
      try {
        return await fn(client, { metadata });
      } catch (err) {
        throw describeCallError(settings.address, err);
      }
    },
    close: () => client.close(),
  };
}

/** The host part of `host:port` / `[v6]:port` (brackets removed). */

/** Resolves the settings for `cmd`, opens a connection, runs `fn` and closes the connection. */
export async function withAdmin<T>(cmd: Command, fn: (conn: AdminConnection) => Promise<T>): Promise<T> {
  const conn = openAdminConnection(await resolveConnection(connectionFlags(cmd)));
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/** A call failure as the user should read it. */
export function describeCallError(address: string, err: unknown): TrellisError {
  const e = fromGrpcError(err);
  switch (e.code) {
    case ErrorCode.UNAVAILABLE:
    case ErrorCode.TIMEOUT:
      // grpc-js ends connection errors with an empty "Resolution note: " when DNS had nothing to add.
      return new TrellisError(
        e.code,
        `cannot reach the control plane at ${address}: ${e.message.replace(/\.?\s*Resolution note:\s*$/, "")}`,
        { cause: e },
      );
    case ErrorCode.UNAUTHENTICATED:
    case ErrorCode.PERMISSION_DENIED:
      return new TrellisError(
        e.code,
        `the control plane at ${address} refused the admin token: ${e.message}`,
        {
          cause: e,
        },
      );
    case ErrorCode.PROTOCOL:
      return new TrellisError(
        e.code,
        `the server at ${address} does not speak the Trellis admin API (is it a control plane?): ${e.message}`,
        { cause: e },
      );
    default:
      return e;
  }
}
