import * as http2 from "node:http2";
for (const mode of ["cancel", "noerror", "destroy", "socket", "normal"]) {
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("error", () => {});
    stream.respond({ ":status": 200 });
    stream.write("partial");
    setTimeout(() => {
      if (mode === "cancel") stream.close(8);
      else if (mode === "noerror") stream.close(0);
      else if (mode === "destroy") stream.destroy();
      else if (mode === "socket") stream.session.socket.destroy();
      else stream.end();
    }, 50);
  });
  await new Promise((r) => server.listen(0, r));
  const s = http2.connect(`http://127.0.0.1:${server.address().port}`);
  s.on("error", () => {});
  const st = s.request({ ":path": "/", ":method": "POST" }, { endStream: false });
  st.write("body-not-ended");
  const ev = [];
  for (const e of ["response", "error", "aborted", "end", "close"]) st.on(e, (x) => ev.push(e + (e === "error" ? `(${x.code})` : "")));
  st.on("data", () => ev.push("data"));
  await new Promise((r) => st.on("close", () => setTimeout(r, 50)));
  console.log(mode, ev.join(","), "rstCode", st.rstCode, "aborted", st.aborted);
  s.destroy(); server.close();
}
