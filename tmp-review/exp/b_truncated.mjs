import { peer, setup, front, sleep, limits, http } from "./harness.mjs";
const p = await peer((stream) => {
  stream.respond({ ":status": 200, "content-type": "text/plain" });
  stream.write("first-half;");
  setTimeout(() => stream.session.socket.destroy(), 50);
});
const s = setup({ ports: [p.port] });
const f = await front(s.handle);
const req = http.request({ port: f.port, path: "/x", method: "GET" }, (res) => {
  let body = ""; res.on("data", (c) => body += c);
  res.on("end", () => console.log("caller got COMPLETE response", res.statusCode, JSON.stringify(body)));
  res.on("aborted", () => console.log("caller saw aborted"));
  res.on("error", (e) => console.log("caller res error", e.code));
});
req.on("error", (e) => console.log("caller error", e.code));
req.end();
await sleep(500);
console.log("records", JSON.stringify(s.records), "limits", JSON.stringify(limits(s.cluster)));
process.exit(0);
