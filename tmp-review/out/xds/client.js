/**
 * The discovery client: one aggregated incremental stream to the control plane (see
 * proto/trellis/v1/discovery.proto for the protocol).
 *
 * What it guarantees to its owner (the sidecar, or a simulated proxy in tests):
 *  - Responses are handed to `onResources` one at a time, in order; each is answered with an ACK,
 *    or a NACK naming the resources that failed to decode or that `onResources` rejected (the rest
 *    of the response counts as applied).
 *  - What was accepted is held here (`held(typeUrl)`), across reconnects; after a reconnect the
 *    held versions are declared so unchanged resources are not resent.
 *  - Connection loss: reconnect with exponential backoff and full jitter, rotating through the
 *    control-plane addresses, resuming the registration lease (`resume_lease_id`), so the
 *    registration does not flap. `go_away` reconnects (elsewhere) after its delay.
 *  - `deregister()` removes the registration at once; `stop()` just closes (the lease expires).
 */
import { EventEmitter } from "node:events";
import { create, fromBinary } from "@bufbuild/protobuf";
import { durationMs } from "@trellis/proto/duration";
import { TrellisError } from "@trellis/proto/errors";
import { DiscoverRequestSchema, DiscoveryService, } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { createGrpcClient } from "@trellis/proto/grpc-adapter";
import { controlPlaneChannel } from "@trellis/proto/grpc-tls";
import { RESOURCE_SCHEMAS } from "@trellis/proto/resource-types";
import { Backoff } from "./backoff.js";
export class XdsClient extends EventEmitter {
    opts;
    subs = new Map();
    backoff;
    client;
    call;
    addressIndex = 0;
    leaseId = 0n;
    stopped = false;
    connectedNow = false;
    retryTimer;
    queue = Promise.resolve();
    workload;
    constructor(opts) {
        super();
        this.opts = opts;
        if (opts.addresses.length === 0)
            throw new TrellisError("TRELLIS_ERR_CONFIG", "at least one control-plane address is needed");
        this.backoff = new Backoff(opts.backoff);
        this.workload = create(WorkloadSchema, opts.workload);
    }
    /** True while a stream is established (welcome received). */
    get connected() {
        return this.connectedNow;
    }
    /** The registration lease (0 before the first welcome). */
    get lease() {
        return this.leaseId;
    }
    /** What is held for a type, by name. */
    held(typeUrl) {
        return this.subs.get(typeUrl)?.held ?? new Map();
    }
    /** Connects (and keeps reconnecting until stopped). */
    start() {
        this.stopped = false;
        this.connect();
    }
    /**
     * Seeds what is held for a type before the first connection (config persisted by an earlier run),
     * so the first subscription declares those versions and unchanged resources are not resent.
     */
    preload(typeUrl, resources) {
        const sub = this.sub(typeUrl);
        for (const r of resources)
            sub.held.set(r.name, r);
    }
    /** Adds names ("*" for everything meant for this proxy) to a type's subscription. */
    subscribe(typeUrl, names) {
        const sub = this.sub(typeUrl);
        const added = names.filter((n) => !sub.names.has(n));
        for (const n of added)
            sub.names.add(n);
        if (added.length > 0 && this.connectedNow)
            this.send({ typeUrl, subscribe: added });
    }
    /** Removes names from a type's subscription and drops what was held for them. */
    unsubscribe(typeUrl, names) {
        const sub = this.sub(typeUrl);
        const removed = names.filter((n) => sub.names.delete(n));
        for (const n of removed)
            sub.held.delete(n);
        if (removed.length > 0 && this.connectedNow)
            this.send({ typeUrl, unsubscribe: removed });
    }
    sub(typeUrl) {
        let s = this.subs.get(typeUrl);
        if (s === undefined) {
            s = { names: new Set(), held: new Map() };
            this.subs.set(typeUrl, s);
        }
        return s;
    }
    connect() {
        if (this.stopped)
            return;
        const address = this.opts.addresses[this.addressIndex % this.opts.addresses.length];
        this.client?.close();
        const channel = controlPlaneChannel(address, this.opts.caPem);
        this.client = createGrpcClient(DiscoveryService, address, channel.credentials, {
            ...channel.options,
            "grpc.keepalive_time_ms": this.opts.keepaliveMs ?? 10_000,
            "grpc.keepalive_timeout_ms": this.opts.keepaliveTimeoutMs ?? 5_000,
            "grpc.keepalive_permit_without_calls": 1,
            "grpc.initial_reconnect_backoff_ms": 100,
        });
        const call = this.client.discover();
        this.call = call;
        let welcomed = false;
        const connectTimer = setTimeout(() => {
            if (!welcomed)
                call.cancel();
        }, this.opts.connectTimeoutMs ?? 10_000);
        connectTimer.unref();
        call
            .send({
            message: {
                case: "hello",
                value: {
                    workload: this.workload,
                    credential: { case: "joinToken", value: this.opts.joinToken },
                    resumeLeaseId: this.leaseId,
                },
            },
        })
            .catch(() => undefined);
        void (async () => {
            let error;
            try {
                for await (const res of call.responses) {
                    if (this.call !== call)
                        break;
                    if (res.message.case === "welcome") {
                        welcomed = true;
                        clearTimeout(connectTimer);
                        this.onWelcome(res.message.value);
                    }
                    else if (res.message.case === "resources") {
                        const resources = res.message.value;
                        this.queue = this.queue.then(() => this.onResponse(call, resources));
                    }
                    else if (res.message.case === "goAway") {
                        const after = durationMs(res.message.value.reconnectAfter, 0);
                        this.addressIndex++;
                        this.dropCall(call, new TrellisError("TRELLIS_ERR_UNAVAILABLE", "control plane sent go_away"), after);
                        return;
                    }
                }
            }
            catch (err) {
                error = TrellisError.from(err);
            }
            finally {
                clearTimeout(connectTimer);
            }
            if (this.call === call) {
                if (!welcomed)
                    this.addressIndex++;
                this.dropCall(call, error ?? new TrellisError("TRELLIS_ERR_UNAVAILABLE", "discovery stream ended"), undefined);
            }
        })();
    }
    onWelcome(w) {
        this.leaseId = w.leaseId;
        this.connectedNow = true;
        this.backoff.reset();
        // Re-declare every subscription with the versions held, so unchanged resources are not resent.
        for (const [typeUrl, sub] of this.subs) {
            if (sub.names.size === 0)
                continue;
            const initialResourceVersions = {};
            for (const [name, r] of sub.held)
                initialResourceVersions[name] = r.version;
            this.send({ typeUrl, subscribe: [...sub.names], initialResourceVersions });
        }
        this.emit("connected", w);
    }
    async onResponse(call, res) {
        if (this.call !== call)
            return;
        const schema = RESOURCE_SCHEMAS.get(res.typeUrl);
        const update = {
            typeUrl: res.typeUrl,
            resources: [],
            removed: res.removedResources,
            notFound: res.notFound,
        };
        const rejected = [];
        for (const r of res.resources) {
            try {
                if (schema === undefined)
                    throw new Error(`unknown resource type ${res.typeUrl}`);
                if (r.resource === undefined || r.resource.typeUrl !== res.typeUrl) {
                    throw new Error(`resource body is missing or of type ${r.resource?.typeUrl ?? "none"}`);
                }
                update.resources.push({
                    name: r.name,
                    version: r.version,
                    message: fromBinary(schema, r.resource.value),
                });
            }
            catch (err) {
                rejected.push({ name: r.name, message: `cannot decode: ${err.message}` });
            }
        }
        try {
            const result = await this.opts.onResources(update);
            for (const e of result?.rejected ?? [])
                rejected.push(e);
        }
        catch (err) {
            for (const r of update.resources)
                rejected.push({ name: r.name, message: err.message });
        }
        const sub = this.sub(res.typeUrl);
        const bad = new Set(rejected.map((e) => e.name));
        for (const r of update.resources)
            if (!bad.has(r.name))
                sub.held.set(r.name, r);
        for (const n of update.removed)
            sub.held.delete(n);
        if (this.call !== call)
            return;
        if (rejected.length > 0) {
            this.send({
                typeUrl: res.typeUrl,
                responseNonce: res.nonce,
                errorDetail: {
                    message: `${rejected.length} resource${rejected.length === 1 ? "" : "s"} rejected`,
                    resourceErrors: rejected,
                },
            });
            this.emit("rejected", update, rejected);
        }
        else {
            this.send({ typeUrl: res.typeUrl, responseNonce: res.nonce });
        }
        this.emit("update", update);
    }
    send(subscription) {
        const call = this.call;
        if (call === undefined)
            return;
        call
            .send(create(DiscoverRequestSchema, {
            message: { case: "subscription", value: subscription },
        }))
            .catch(() => undefined);
    }
    dropCall(call, err, delayMs) {
        if (this.call !== call)
            return;
        this.call?.cancel();
        this.call = undefined;
        this.connectedNow = false;
        // Every stream end is reported, including attempts refused before `welcome` (bad credential).
        this.emit("disconnected", err);
        if (this.stopped)
            return;
        const delay = delayMs ?? this.backoff.next();
        this.retryTimer = setTimeout(() => this.connect(), delay);
        this.retryTimer.unref();
    }
    /**
     * Sends a raw Subscription request as is (diagnostics and protocol tests: e.g. a stale nonce).
     * Ordinary use goes through subscribe/unsubscribe, which keep the client's state consistent.
     */
    sendRaw(subscription) {
        this.send(subscription);
    }
    /** Removes the registration at once (clean shutdown), then closes. */
    async deregister(reason = "shutdown", timeoutMs = 2000) {
        const call = this.call;
        this.stopped = true;
        if (this.retryTimer !== undefined)
            clearTimeout(this.retryTimer);
        if (call !== undefined && this.connectedNow) {
            const ended = new Promise((resolve) => {
                call.call.once("status", () => resolve());
                setTimeout(resolve, timeoutMs).unref();
            });
            await call.send({ message: { case: "deregister", value: { reason } } }).catch(() => undefined);
            call.end();
            await ended;
        }
        this.close();
    }
    /** Closes without deregistering: the registration expires with its lease unless resumed. */
    stop() {
        this.stopped = true;
        if (this.retryTimer !== undefined)
            clearTimeout(this.retryTimer);
        this.close();
    }
    close() {
        this.call?.cancel();
        this.call = undefined;
        this.connectedNow = false;
        this.client?.close();
        this.client = undefined;
    }
}
