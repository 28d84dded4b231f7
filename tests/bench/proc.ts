/**
 * CPU time and memory of benchmarked processes, read from /proc (Linux only).
 *
 * CPU is utime + stime (fields 14 and 15 of /proc/PID/stat), which covers every thread of the
 * process (V8's GC and compiler threads, libuv's pool), in clock ticks (`getconf CLK_TCK`, 100 on
 * Linux: 10 ms resolution, so a measurement window needs seconds of CPU to be precise to ~1 %).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/PID/stat times. */
export const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** CPU time of a process, µs: in user space and in the kernel on its behalf. */
export interface CpuTimes {
  userUs: number;
  sysUs: number;
}

/** utime and stime of `pid` in microseconds; throws if the process is gone. */
export function cpuTimes(pid: number): CpuTimes {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Field 2 (comm) is parenthesised and may contain spaces: split after the last ')'. rest[0] = field 3.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { userUs: (Number(rest[14 - 3]) * 1e6) / CLK_TCK, sysUs: (Number(rest[15 - 3]) * 1e6) / CLK_TCK };
}

/** utime + stime of `pid` in microseconds; throws if the process is gone. */
export function cpuMicros(pid: number): number {
  const t = cpuTimes(pid);
  return t.userUs + t.sysUs;
}

/** Sum of cpuMicros over `pids`. */
export function cpuMicrosOf(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuMicros(pid);
  return sum;
}

/**
 * Memory of a process from /proc/PID/status, in MiB: resident now (VmRSS), its peak (VmHWM), and
 * VmRSS split into private anonymous memory (RssAnon: heaps, the process's own) and file-backed
 * pages (RssFile: mostly the node binary's code, shared with every process mapping the same file).
 */
export interface Memory {
  rssMiB: number;
  hwmMiB: number;
  anonMiB: number;
  fileMiB: number;
}

/** Memory of `pid`; throws if the process is gone. */
export function memory(pid: number): Memory {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return {
    rssMiB: kib("VmRSS") / 1024,
    hwmMiB: kib("VmHWM") / 1024,
    anonMiB: kib("RssAnon") / 1024,
    fileMiB: kib("RssFile") / 1024,
  };
}

/**
 * Samples VmRSS of `pids` every `intervalMs` until stopped; `stop()` returns the largest value seen
 * per pid (MiB). Cheap (one small file read per pid per sample) and it runs on the load core's
 * process, so it does not steal the measured core.
 */
export function sampleRss(pids: readonly number[], intervalMs = 200): { stop(): Map<number, number> } {
  const peak = new Map<number, number>();
  const take = () => {
    for (const pid of pids) {
      try {
        const { rssMiB } = memory(pid);
        peak.set(pid, Math.max(peak.get(pid) ?? 0, rssMiB));
      } catch {
        // The process died: the run itself reports that.
      }
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

/** Pins every thread of `pid` to `cpus` (taskset -a -p). Used for processes a helper started. */
export function pinAllThreads(pid: number, cpus: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}
