import { setup, front, sleep, limits, http, peer } from "./harness.mjs";
const good = await peer((stream) => { stream.respond({ ":status": 200 }); stream.end("ok"); });
const s = setup({ ports: [1, good.port] });  // port 1: refused
const f = await front(s.handle);
for (let i = 0; i < 4; i++) {
  await new Promise((r) => { const req = http.request({ port: f.port, path: "/x" }, (res) => { console.log("caller got", res.statusCode, res.headers["x-trellis-error"] ?? ""); res.resume(); res.on("end", r); }); req.on("error", (e) => { console.log("err", e.code); r(); }); req.end(); });
}
console.log("records", JSON.stringify(s.records), JSON.stringify(limits(s.cluster)), JSON.stringify(s.events));
process.exit(0);
