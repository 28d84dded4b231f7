import { peer, setup, front, sleep, limits, http } from "./harness.mjs";
// Peer accepts the request, then its connection drops (crash) before answering.
const p = await peer((stream) => { setTimeout(() => stream.session.socket.destroy(), 50); });
const s = setup({ ports: [p.port] });
const f = await front(s.handle);
const req = http.request({ port: f.port, path: "/x", method: "GET" }, (res) => { console.log("caller got", res.statusCode); res.resume(); });
req.on("error", (e) => console.log("caller error", e.code));
req.end();
await sleep(1500);
console.log("after 1.5s: records", JSON.stringify(s.records), "limits", JSON.stringify(limits(s.cluster)), "events", JSON.stringify(s.events));
process.exit(0);
