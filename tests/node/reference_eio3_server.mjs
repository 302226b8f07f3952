// Node's socket.io 4.8 with allowEIO3, serving what tests/e2e/sio_helpers.demo_server serves to the
// test_eio3.py comparison: "/" acks "echo" with its arguments; "/admin" refuses a client without auth
// {"token": "secret"} (Error "unauthorized", data {"hint": "token"}) and acks "whoami" with [nsp, id].
// Usage: node reference_eio3_server.mjs   (prints {"event":"listening","port":..} on stdout)
import { createServer } from "node:http";
import { Server } from "socket.io";

const httpServer = createServer();
const io = new Server(httpServer, { allowEIO3: true });
io.on("connection", (socket) => {
  socket.on("echo", (...args) => args.pop()(...args));
});
const admin = io.of("/admin");
admin.use((socket, next) => {
  if (socket.handshake.auth.token === "secret") return next();
  const err = new Error("unauthorized");
  err.data = { hint: "token" };
  next(err);
});
admin.on("connection", (socket) => {
  socket.on("whoami", (ack) => ack([socket.nsp.name, socket.id]));
});
httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: httpServer.address().port }) + "\n");
});
