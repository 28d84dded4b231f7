/**
 * Tests that need root (network namespaces, iptables, setpriv to another uid) skip on a developer's
 * machine but must never silently skip on CI, where a skip would hide that they never ran.
 */
import type { TestContext } from "node:test";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** Who is running, for tests of requireRoot itself; defaults to the current process. */
export interface RootProbe {
  uid: number | undefined;
  /** True when env CI is "true". */
  ci: boolean;
}

/**
 * Returns true when running as root. Otherwise: under CI=true throws a PERMISSION_DENIED TrellisError
 * (the test fails, naming `reason`); elsewhere calls `t.skip("needs root: <reason>")` and returns false,
 * so the caller writes `if (!requireRoot(t, "iptables in a netns")) return;`.
 */
export function requireRoot(
  t: Pick<TestContext, "skip">,
  reason: string,
  probe: RootProbe = { uid: process.getuid?.(), ci: process.env.CI === "true" },
): boolean {
  if (probe.uid === 0) return true;
  if (probe.ci) {
    throw new TrellisError(
      ErrorCode.PERMISSION_DENIED,
      `needs root: ${reason}. CI=true, so this fails instead of skipping: run CI as root.`,
    );
  }
  t.skip(`needs root: ${reason}`);
  return false;
}
