import * as http2 from "node:http2";
const modes = ["socket-destroy", "rst-cancel", "rst-noerror", "rst-internal", "mid-body-cancel", "mid-body-socket"];
for (const mode of modes) {
  const server = http2.createServer();
  server.on("stream", (stream) => { stream.on("error", () => {});
    if (mode === "socket-destroy") stream.session.socket.destroy();
    else if (mode === "rst-cancel") stream.close(http2.constants.NGHTTP2_CANCEL);
    else if (mode === "rst-noerror") stream.close(0);
    else if (mode === "rst-internal") stream.close(2);
    else {
      stream.respond({ ":status": 200 });
      stream.write("partial");
      setTimeout(() => mode === "mid-body-cancel" ? stream.close(http2.constants.NGHTTP2_CANCEL) : stream.session.socket.destroy(), 50);
    }
  });
  await new Promise((r) => server.listen(0, r));
  const s = http2.connect(`http://127.0.0.1:${server.address().port}`);
  s.on("error", () => {});
  const st = s.request({ ":path": "/" }, { endStream: true });
  const ev = [];
  for (const e of ["response", "error", "aborted", "end", "close", "finish"]) st.on(e, (x) => ev.push(e + (e === "error" ? `(${x.code}:${x.message})` : "")));
  st.on("data", () => ev.push("data"));
  await new Promise((r) => st.on("close", () => setTimeout(r, 50)));
  console.log(mode, ev.join(","), "rstCode", st.rstCode, "readableEnded", st.readableEnded);
  s.destroy(); server.close();
}
