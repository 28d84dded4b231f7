import * as net from "node:net";
import { setup, front, sleep, limits, http } from "./harness.mjs";
for (const mode of ["close-immediately", "close-after-settings"]) {
  const srv = net.createServer((sock) => {
    if (mode === "close-immediately") sock.destroy();
    else sock.once("data", () => setTimeout(() => sock.destroy(), 20));
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const s = setup({ ports: [srv.address().port] });
  const f = await front(s.handle);
  const req = http.request({ port: f.port, path: "/x" }, (res) => { console.log(mode, "caller got", res.statusCode, res.headers["x-trellis-error"]); res.resume(); });
  req.on("error", (e) => console.log("caller error", e.code));
  req.end();
  await sleep(1300);
  console.log(mode, "records", JSON.stringify(s.records), JSON.stringify(limits(s.cluster)), JSON.stringify(s.events));
}
process.exit(0);
