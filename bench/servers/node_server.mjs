// The benchmark contract on Node's socket.io 4.x with its default options (the reference peer).
// PORT from the environment; every socket joins room "bench" on connect; "echo" is acknowledged with its
// argument (the load generator's object, {id, text, ts}) as it came, Node's idiomatic form; "bcast" is broadcast
// to the room, sender included. With REDIS_URL, the server is one of a cluster on @socket.io/redis-adapter 8
// (the cluster_bcast scenario). With --parser msgpack it speaks socket.io-msgpack-parser (the msgpack echo row).
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const httpServer = createServer();
const options = {};
if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  options.adapter = createAdapter(pub, sub);
}
if (process.argv.includes("--parser") && process.argv[process.argv.indexOf("--parser") + 1] === "msgpack") {
  options.parser = (await import("socket.io-msgpack-parser")).default;
}
const io = new Server(httpServer, options);

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
