export function splice(src, dst, done) {
    let finished = false;
    const finish = (err) => {
        if (finished)
            return;
        finished = true;
        src.off("data", onData);
        dst.off("drain", onDrain);
        done(err);
    };
    const onData = (chunk) => {
        if (!dst.write(chunk))
            src.pause();
    };
    const onDrain = () => src.resume();
    src.on("data", onData);
    dst.on("drain", onDrain);
    src.once("end", () => dst.end());
    src.once("error", (err) => {
        dst.destroy(err);
        finish(err);
    });
    src.once("close", () => {
        if (!src.readableEnded) {
            const err = new Error("upstream closed before the end of the body");
            dst.destroy(err);
            finish(err);
        }
    });
    dst.once("finish", () => finish());
    dst.once("error", (err) => {
        src.destroy(err);
        finish(err);
    });
    dst.once("close", () => {
        if (!dst.writableFinished) {
            src.destroy();
            finish(new Error("the caller went away before the end of the body"));
        }
    });
}
