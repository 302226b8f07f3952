// The Node socket.io 4.8 server anysio.Client's tests talk to (tests/e2e/test_client.py).
// Usage: node client_peer_server.mjs <port> [--recovery] [--msgpack] [--tls KEY CERT]   (port 0 = pick a free
// one; --msgpack: socket.io-msgpack-parser, as a Node app sets it; --tls: https with this key and certificate)
// Prints {"event":"listening","port":..} on stdout, then one JSON line per thing the tests wait for.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { Server } from "socket.io";
import msgpackParser from "socket.io-msgpack-parser";

const port = Number(process.argv[2] ?? 0);
const recovery = process.argv.includes("--recovery");
const msgpack = process.argv.includes("--msgpack");
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const tls = process.argv.indexOf("--tls");
const httpServer =
  tls > 0
    ? createTlsServer({ key: readFileSync(process.argv[tls + 1]), cert: readFileSync(process.argv[tls + 2]) })
    : createServer();
const io = new Server(httpServer, {
  pingInterval: 1000,
  pingTimeout: 1000,
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 60_000 } } : {}),
  ...(msgpack ? { parser: msgpackParser } : {}),
});

function handlers(socket) {
  const nsp = socket.nsp.name;
  say({ event: "connection", nsp, id: socket.id, eio: socket.conn.id, auth: socket.handshake.auth, recovered: socket.recovered,
        xtoken: socket.handshake.headers["x-token"] ?? null,
        transport: socket.conn.transport.name });
  socket.conn.on("upgrade", (t) => say({ event: "upgrade", nsp, transport: t.name }));
  socket.on("disconnect", (reason) => say({ event: "disconnect", nsp, id: socket.id, reason }));
  socket.emit("welcome", nsp, socket.id);
  socket.on("echo", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  socket.on("echo-event", (...args) => socket.emit("echoed", ...args));
  socket.on("tell", (...args) => say({ event: "told", nsp, args: args.map((a) => (Buffer.isBuffer(a) ? { binary: a.toString("hex") } : a)) }));
  // The server asks the client: its ack comes back to the client as an "answered" event.
  socket.on("ask", (event, ...args) => {
    socket.timeout(5000).emit(event, ...args, (err, ...replies) =>
      socket.emit("answered", err ? { error: err.message } : replies),
    );
  });
  socket.on("kick", () => socket.disconnect());
  socket.on("kick-close", () => socket.disconnect(true));
  socket.on("drop", () => {
    socket.conn.close();
    setTimeout(() => io.of(nsp).emit("missed", "while away"), 20);
  });
}

io.on("connection", handlers);
io.of("/admin").use((socket, next) => {
  if (socket.handshake.auth?.token === "ok") return next();
  const err = new Error("not authorized");
  err.data = { hint: "send a token" };
  next(err);
});
io.of("/admin").on("connection", handlers);

httpServer.listen(port, "127.0.0.1", () => say({ event: "listening", port: httpServer.address().port }));
