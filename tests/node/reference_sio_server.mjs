// Reference Socket.IO server (Node socket.io 4.8) with the spec's test-suite config.
// Usage: node reference_sio_server.mjs <port> [host]      (port 0 = pick a free one)
// Prints {"event":"listening","port":..} on stdout; logs Engine.IO closes and Socket.IO disconnects as
// JSON lines on stderr so the capture script can record the reasons Node gives.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const host = process.argv[3] ?? "127.0.0.1";
const log = (obj) => process.stderr.write(JSON.stringify({ t: Date.now(), ...obj }) + "\n");

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6,
  connectTimeout: 1000,
  cors: { origin: "*" },
});

io.engine.on("connection_error", (err) =>
  log({ event: "connection_error", code: err.code, message: err.message, context: err.context }),
);
io.engine.on("connection", (socket) => {
  log({ event: "eio_connection", sid: socket.id, transport: socket.transport.name });
  socket.on("close", (reason, description) =>
    log({
      event: "eio_close",
      sid: socket.id,
      reason,
      description: description === undefined ? null : String(description?.message ?? description),
    }),
  );
});

io.on("connection", (socket) => {
  log({ event: "connection", nsp: "/", id: socket.id, auth: socket.handshake.auth });
  socket.on("disconnect", (reason) => log({ event: "disconnect", nsp: "/", id: socket.id, reason }));
  socket.on("error", (e) => log({ event: "socket_error", nsp: "/", id: socket.id, message: e.message }));
  socket.emit("auth", socket.handshake.auth);

  socket.on("message", (...args) => {
    socket.emit.apply(socket, ["message-back", ...args]);
  });

  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
});

io.of("/custom").on("connection", (socket) => {
  log({ event: "connection", nsp: "/custom", id: socket.id, auth: socket.handshake.auth });
  socket.on("disconnect", (reason) =>
    log({ event: "disconnect", nsp: "/custom", id: socket.id, reason }),
  );
  socket.emit("auth", socket.handshake.auth);
});

httpServer.listen(port, host, () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: httpServer.address().port }) + "\n");
});
