// The cluster contract (issue 11, examples/cluster/server.py) on Node: socket.io 4.8 with
// @socket.io/redis-adapter 8 (classic pub/sub, or the sharded adapter with ADAPTER=sharded).
//
//   PORT=5001 REDIS_URL=redis://127.0.0.1:6379 NAME=a [ADAPTER=classic|sharded] node node_server.mjs
//   (sharded: SUBSCRIPTION_MODE=static|dynamic|dynamic-private, "dynamic" by default)
//
// Prints {"event":"listening","port":N,"uids":{"/":..,"/chat":..}} on stdout once it serves, then runs until
// SIGTERM or EOF on stdin. Namespaces "/" and "/chat" answer the contract's events (see startServer).
// capture_vectors.mjs imports startServer to run two of them in one process.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createClient } from "redis";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";

const sortJson = (values) =>
  [...values].sort((a, b) => {
    const x = JSON.stringify(a);
    const y = JSON.stringify(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });

function contract(nsp, name) {
  const seen = [];
  // Every server-side event this namespace hears (from another server or an emitter), in order.
  const onServerSideEmit = nsp._onServerSideEmit.bind(nsp);
  nsp._onServerSideEmit = (args) => {
    const [event, ...rest] = args;
    seen.push([event, rest.filter((a) => typeof a !== "function")]);
    onServerSideEmit(args);
  };
  nsp.on("who", (cb) => cb(name));

  nsp.on("connection", (socket) => {
    const auth = socket.handshake.auth ?? {};
    socket.data = { name: auth.name };
    socket.join(auth.rooms ?? []);
    socket.emit("welcome", name);

    const target = (rooms) => (rooms && rooms.length ? nsp.to(rooms) : nsp);
    socket.on("to", ({ rooms, except, event, args }, ack) => {
      let op = target(rooms);
      if (except && except.length) op = op.except(except);
      op.emit(event, ...(args ?? []));
      ack(true);
    });
    socket.on("ask", async ({ rooms, timeout_ms }, ack) => {
      try {
        ack(sortJson(await target(rooms).timeout(timeout_ms).emitWithAck("question")));
      } catch (err) {
        ack({ error: err.message, replies: sortJson(err.responses ?? []) });
      }
    });
    socket.on("fetch", async ({ rooms }, ack) => {
      const sockets = await nsp.in(rooms ?? []).fetchSockets();
      const rows = sockets.map((s) => ({ id: s.id, name: s.data?.name, rooms: [...s.rooms].sort() }));
      ack(rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
    });
    socket.on("join_all", ({ rooms, room }, ack) => {
      nsp.in(rooms ?? []).socketsJoin(room);
      ack(true);
    });
    socket.on("leave_all", ({ rooms, room }, ack) => {
      nsp.in(rooms ?? []).socketsLeave(room);
      ack(true);
    });
    socket.on("kick", ({ rooms }, ack) => {
      ack(true);
      nsp.in(rooms ?? []).disconnectSockets(true);
    });
    socket.on("sse", ({ event, args }, ack) => {
      nsp.serverSideEmit(event, ...(args ?? []));
      ack(true);
    });
    socket.on("seen", (_arg, ack) => ack(seen));
    // allRooms exists in the classic adapter only (the sharded one is socket.io-adapter's ClusterAdapter).
    socket.on("rooms", async (_arg, ack) => ack([...(await nsp.adapter.allRooms())].sort()));
    socket.on("sse_ack", async (_arg, ack) => {
      try {
        ack(sortJson(await nsp.serverSideEmitWithAck("who")));
      } catch (err) {
        ack({ error: err.message, replies: sortJson(err.responses ?? []) });
      }
    });
  });
}

// Starts one server; resolves to { io, port, uids, close }.
export async function startServer({ port = 0, redisUrl, name, adapter = "classic", subscriptionMode = "dynamic" }) {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
  await Promise.all([pub.connect(), sub.connect()]);

  const http = createServer();
  const io = new Server(http, {
    adapter:
      adapter === "sharded" ? createShardedAdapter(pub, sub, { subscriptionMode }) : createAdapter(pub, sub),
  });
  for (const path of ["/", "/chat"]) contract(io.of(path), name);
  await new Promise((resolve) => http.listen(port, "127.0.0.1", resolve));

  const uids = {};
  for (const path of ["/", "/chat"]) uids[path] = io.of(path).adapter.uid;
  return {
    io,
    port: http.address().port,
    uids,
    async close() {
      await io.close();
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const server = await startServer({
    port: Number(process.env.PORT ?? 0),
    redisUrl: process.env.REDIS_URL,
    name: process.env.NAME ?? "node",
    adapter: process.env.ADAPTER ?? "classic",
    subscriptionMode: process.env.SUBSCRIPTION_MODE ?? "dynamic",
  });
  process.stdout.write(JSON.stringify({ event: "listening", port: server.port, uids: server.uids }) + "\n");
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}
