/**
 * Parses and validates policy inputs: the shared first step of `validate` and `apply`.
 * Returns every diagnostic of every file; the caller applies nothing when there is any.
 */
import type { Diagnostic, ParsedPolicy } from "@trellis/proto/yaml-codec";
import { parsePolicies } from "@trellis/proto/yaml-codec";
import type { InputFile } from "./inputs.js";

export interface LoadedPolicies {
  policies: ParsedPolicy[];
  diagnostics: Diagnostic[];
  documents: number;
  files: number;
}

/** Parses and validates all inputs, in order. */
export function loadPolicies(inputs: readonly InputFile[]): LoadedPolicies {
  const out: LoadedPolicies = { policies: [], diagnostics: [], documents: 0, files: inputs.length };
  for (const input of inputs) {
    const r = parsePolicies(input.text, input.name);
    out.policies.push(...r.policies);
    out.diagnostics.push(...r.diagnostics);
    out.documents += r.documents;
  }
  return out;
}
