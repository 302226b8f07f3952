// Reference Engine.IO server (Node engine.io 6.x) with the spec's test-suite config.
// Usage: node reference_eio_server.mjs <port> [host]
// Prints {"event":"listening","port":..} on stdout; logs every connection/close/error as JSON lines on stderr,
// so the capture script can record the close reason Node gives.
import { createServer } from "node:http";
import { Server } from "engine.io";

const port = Number(process.argv[2] ?? 3000);
const host = process.argv[3] ?? "127.0.0.1";
const log = (obj) => process.stderr.write(JSON.stringify({ t: Date.now(), ...obj }) + "\n");

const httpServer = createServer();
const engine = new Server({
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6,
  cors: { origin: "*" },
});
engine.attach(httpServer);

engine.on("connection_error", (err) =>
  log({ event: "connection_error", code: err.code, message: err.message, context: err.context }),
);
engine.on("connection", (socket) => {
  log({ event: "connection", sid: socket.id, transport: socket.transport.name });
  socket.on("upgrade", (t) => log({ event: "upgrade", sid: socket.id, transport: t.name }));
  socket.on("data", (...args) => socket.send(...args));
  socket.on("error", (e) => log({ event: "error", sid: socket.id, message: String(e?.message ?? e) }));
  socket.on("close", (reason, description) =>
    log({
      event: "close",
      sid: socket.id,
      reason,
      description: description === undefined ? null : String(description?.message ?? description),
    }),
  );
});

httpServer.listen(port, host, () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: httpServer.address().port }) + "\n");
});
