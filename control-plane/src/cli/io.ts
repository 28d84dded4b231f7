/**
 * The CLI's connection to the outside world, injectable so tests can run commands in-process.
 */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  exitCode(code: number): void;
  stdin: NodeJS.ReadableStream;
}

/** The real process streams. */
export const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  exitCode: (code) => {
    process.exitCode = code;
  },
  stdin: process.stdin,
};
