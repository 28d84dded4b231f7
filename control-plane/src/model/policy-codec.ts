/**
 * How a policy is stored: the kind message in protobuf binary, status cleared (status lives under
 * its own keys), with metadata.resourceVersion filled from the store's modRevision on read.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { KindInfo, PolicyMessage } from "@trellis/proto/kinds";
import type { KeyValue } from "../store/store.js";

/** Bytes to store for a policy: a copy without status and without resourceVersion. */
export function encodePolicy(info: KindInfo, message: PolicyMessage): Uint8Array {
  const copy = clone(info.schema as DescMessage, message as never) as PolicyMessage;
  copy.status = undefined;
  if (copy.metadata !== undefined) copy.metadata.resourceVersion = "";
  return toBinary(info.schema as DescMessage, copy as never);
}

/** The stored policy with metadata.resourceVersion = the key's modRevision. */
export function decodePolicy(info: KindInfo, kv: KeyValue): PolicyMessage {
  const message = fromBinary(info.schema as DescMessage, kv.value) as unknown as PolicyMessage;
  if (message.metadata !== undefined) message.metadata.resourceVersion = String(kv.modRevision);
  return message;
}
