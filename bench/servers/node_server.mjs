// The benchmark contract on Node's socket.io 4.x with its default options (the reference peer).
// PORT from the environment; every socket joins room "bench" on connect; "echo" is acknowledged with its
// argument (the load generator's object, {id, text, ts}) as it came, Node's idiomatic form; "bcast" is broadcast
// to the room, sender included.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const httpServer = createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
  socket.on("bcast", (payload) => {
    io.to("bench").emit("bcast", payload);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening on 127.0.0.1:${port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
