// Records what @socket.io/redis-adapter 8 and @socket.io/redis-emitter put on Redis, as test vectors for the
// Rust codec (rust/adapter/redis.rs) and the Python adapter: tests/vectors/redis_adapter.json.
//
//   node tests/cluster/capture_vectors.mjs [out.json]
//
// Starts its own redis-server (127.0.0.1, free port, temporary dir, no persistence), two Node socket.io servers
// (node_server.mjs) on the classic adapter and two on the sharded one, official clients over WebSocket, and
// performs every operation in turn. A `redis-cli MONITOR` records every command in order (PUBLISH, SPUBLISH,
// PUBSUB NUMSUB, the subscriptions); a PSUBSCRIBE * connection cross-checks the bytes of each classic PUBLISH.
// After each operation has visibly completed (a client got the event, a promise resolved, an adapter emitted
// join-room, ...), a marker PUBLISH closes its slice of the MONITOR log.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";
import { io as connect } from "socket.io-client";
import { Emitter } from "@socket.io/redis-emitter";
import notepack from "notepack.io";
import { Encoder } from "socket.io-parser";
import { startRedis } from "./redis_server.mjs";
import { startServer } from "./node_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const outPath = process.argv[2] ?? join(here, "..", "vectors", "redis_adapter.json");
const STEP_TIMEOUT_MS = 10000;

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP_TIMEOUT_MS);
    }),
  ]);
}

// --- JSON forms -----------------------------------------------------------------------------------------------
function isBytes(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}
// Decoded value -> JSON-safe: bytes become {"binary": "<hex>"}, undefined -> null (in arrays).
function toJson(v) {
  if (v instanceof Date) return { timestamp: v.toJSON() };
  if (isBytes(v)) return { binary: Buffer.from(v instanceof ArrayBuffer ? v : v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)).toString("hex") };
  if (v === undefined) return null;
  if (typeof v === "number" && !Number.isFinite(v)) return { number: String(v) };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined && typeof x !== "function") o[k] = toJson(x);
    return o;
  }
  return v;
}

// --- MONITOR --------------------------------------------------------------------------------------------------
// redis-cli prints `<time> [<db> <client>] "CMD" "arg" ...`, each argument quoted by sdscatrepr: \\ \" \n \r \t
// \a \b and \xHH for bytes outside printable ASCII.
function unquoteArgs(line) {
  const start = line.indexOf("] ");
  if (start < 0) return null;
  const args = [];
  let i = start + 2;
  while (i < line.length) {
    if (line[i] === " ") { i++; continue; }
    if (line[i] !== '"') return null;
    i++;
    const bytes = [];
    while (i < line.length && line[i] !== '"') {
      if (line[i] === "\\") {
        const c = line[i + 1];
        const simple = { "\\": 0x5c, '"': 0x22, n: 0x0a, r: 0x0d, t: 0x09, a: 0x07, b: 0x08 };
        if (c === "x") { bytes.push(parseInt(line.slice(i + 2, i + 4), 16)); i += 4; }
        else if (c in simple) { bytes.push(simple[c]); i += 2; }
        else return null;
      } else {
        bytes.push(line.charCodeAt(i));
        i++;
      }
    }
    i++;
    args.push(Buffer.from(bytes));
  }
  return args;
}

class Monitor {
  constructor(port) {
    this.commands = [];
    this.waiters = [];
    this.proc = spawn("redis-cli", ["-p", String(port), "-h", "127.0.0.1", "monitor"], { stdio: ["ignore", "pipe", "inherit"] });
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      if (line === "OK") return;
      const args = unquoteArgs(line);
      if (!args) throw new Error(`unparsed MONITOR line: ${line}`);
      this.commands.push(args);
      this.waiters = this.waiters.filter((w) => !w());
    });
  }
  until(predicate, what) {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        const hit = this.commands.find(predicate);
        if (hit) resolve(hit);
        return !!hit;
      };
      if (!check()) this.waiters.push(check);
    }), what);
  }
  stop() {
    this.proc.kill("SIGTERM");
  }
}

// --- the capture ----------------------------------------------------------------------------------------------
const redis = await startRedis();
const cleanup = [];
let failed = false;
try {
  const monitor = new Monitor(redis.port);
  cleanup.push(() => monitor.stop());
  const control = createClient({ url: redis.url });
  await control.connect();
  cleanup.push(() => control.quit());
  // MONITOR is live once it echoes a command.
  await control.publish("capture-marker", "start");
  await monitor.until((c) => c[0].toString().toUpperCase() === "PUBLISH" && c[2]?.toString() === "start", "monitor start");

  // PSUBSCRIBE * sees the classic PUBLISHes byte for byte (a cross-check of the MONITOR unquoting).
  const psub = control.duplicate();
  await psub.connect();
  cleanup.push(() => psub.quit());
  const psubSeen = [];
  await psub.pSubscribe("*", (message, channel) => psubSeen.push([channel.toString(), Buffer.from(message)]), true);

  let markerSeq = 0;
  let cursor = monitor.commands.length;
  const ops = [];
  // Ends the current operation: a marker PUBLISH from the control connection, awaited in the MONITOR log, closes
  // the slice of commands that belongs to it.
  async function endOp(mode, name, description) {
    const marker = `m${++markerSeq}`;
    await control.publish("capture-marker", marker);
    await monitor.until((c) => c[1]?.toString() === "capture-marker" && c[2]?.toString() === marker, `marker ${name}`);
    const idx = monitor.commands.findIndex((c) => c[1]?.toString() === "capture-marker" && c[2]?.toString() === marker);
    const slice = monitor.commands.slice(cursor, idx).filter((c) => c[1]?.toString() !== "capture-marker");
    cursor = idx + 1;
    ops.push({ mode, name, description, commands: slice });
  }

  const clients = [];
  async function client(port, nsp, name, rooms) {
    const socket = connect(`http://127.0.0.1:${port}${nsp}`, {
      forceNew: true, transports: ["websocket"], auth: { name, rooms }, reconnection: false,
    });
    const welcome = once(socket, "welcome");
    await withTimeout(welcome, `welcome ${name}`);
    socket.received = [];
    socket.onAny((event, ...args) => socket.received.push([event, args]));
    clients.push(socket);
    return socket;
  }
  cleanup.push(() => clients.forEach((s) => s.disconnect()));
  const receive = (socket, event) => withTimeout(once(socket, event), `${event} at ${socket.auth.name}`);

  // ---------------- classic adapter ----------------
  const A = await startServer({ redisUrl: redis.url, name: "A" });
  const B = await startServer({ redisUrl: redis.url, name: "B" });
  cleanup.push(() => A.close(), () => B.close());
  const a1 = await client(A.port, "/", "a1", ["r1"]);
  const a2 = await client(A.port, "/", "a2", ["r2"]);
  const b1 = await client(B.port, "/", "b1", ["r1", "r3"]);
  const b2 = await client(B.port, "/", "b2", ["r2"]);
  const ca = await client(A.port, "/chat", "ca", ["r1"]);
  const cb = await client(B.port, "/chat", "cb", ["r1"]);
  await endOp("classic", "startup", "two servers subscribe (per namespace: PSUBSCRIBE <key>#<nsp>#*, SUBSCRIBE request, response, response#<uid>#); four clients on / and two on /chat connect");

  const ioA = A.io;
  const sockA1 = ioA.of("/").sockets.get(a1.id);

  let p = [receive(b1, "hello"), receive(b2, "hello")];
  ioA.emit("hello", 1, "two", { three: 3, four: [4.5, -6, null, true, false] });
  await Promise.all(p);
  await endOp("classic", "broadcast", 'io.emit("hello", 1, "two", {three: 3, four: [4.5, -6, null, true, false]})');

  p = [receive(b1, "room")];
  ioA.to("r1").emit("room", "one");
  await Promise.all(p);
  await endOp("classic", "broadcast_one_room", 'io.to("r1").emit("room", "one"): the room\'s own channel');

  p = [receive(b2, "rooms")];
  ioA.to(["r1", "r2"]).except("r3").emit("rooms", ["x"]);
  await Promise.all(p);
  await endOp("classic", "broadcast_rooms_except", 'io.to(["r1", "r2"]).except("r3").emit("rooms", ["x"])');

  p = [receive(b1, "bcast"), receive(b2, "bcast")];
  sockA1.broadcast.emit("bcast", "from a1");
  await Promise.all(p);
  await endOp("classic", "socket_broadcast", 'socket.broadcast.emit("bcast", "from a1"): except holds the sender\'s id, flags {broadcast: true}');

  p = [receive(b1, "to_room_from_socket")];
  sockA1.to("r3").emit("to_room_from_socket", 7);
  await Promise.all(p);
  await endOp("classic", "socket_to_room", 'socket.to("r3").emit(...): rooms ["r3"], except [sender id]');

  p = [receive(b1, "private")];
  ioA.to(b1.id).emit("private", "psst");
  await Promise.all(p);
  await endOp("classic", "broadcast_to_socket_id", "io.to(<a socket id of B>).emit: the socket's own room, its own channel");

  p = [receive(b1, "vol")];
  ioA.volatile.emit("vol", 1);
  await Promise.all(p);
  await endOp("classic", "broadcast_volatile", 'io.volatile.emit("vol", 1): flags {volatile: true}');

  p = [receive(b1, "comp")];
  ioA.compress(false).to("r1").emit("comp", 2);
  await Promise.all(p);
  await endOp("classic", "broadcast_compress", 'io.compress(false).to("r1").emit("comp", 2): flags {compress: false}');

  p = [receive(b1, "bin")];
  ioA.emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.alloc(300, 7), list: [new Uint8Array([9])] }, "after");
  await Promise.all(p);
  await endOp("classic", "broadcast_binary", "binary attachments: a Buffer, a nested 300-byte Buffer (bin16), a Uint8Array");

  const values = [
    "", "x".repeat(31), "y".repeat(32), "z".repeat(255), "w".repeat(256), "é€😀", "\u0000\n\"\\",
    0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 9007199254740991,
    -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9007199254740991,
    0.1, -2.5, 1e-7, 5e-324, 2 ** 60,
    Array.from({ length: 16 }, (_, i) => i),
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])), {}, [], null, true, false,
  ];
  p = [receive(b1, "values")];
  ioA.emit("values", ...values);
  await Promise.all(p);
  await endOp("classic", "broadcast_values", "every msgpack width notepack picks: strings, ints, floats, arrays and maps around each boundary");

  p = [receive(b1, "nan")];
  ioA.emit("nan", NaN, Infinity, -Infinity, -0, [undefined], { u: undefined, d: new Date(0) }, 1e21, 1.7976931348623157e308);
  await Promise.all(p);
  await endOp("classic", "broadcast_odd_values", "NaN, Infinity, -0 (floats), undefined (nil in arrays, dropped in maps), a Date (msgpack timestamp, toJSON string), and integral doubles of 2^64 or more, which notepack writes as a uint64 with wrapped halves (1e21 arrives as 3875820019684212736, 1.79e308 as 0)");

  p = [receive(cb, "chat")];
  ioA.of("/chat").to("r1").emit("chat", "hi");
  await Promise.all(p);
  await endOp("classic", "broadcast_namespace", 'io.of("/chat").to("r1").emit("chat", "hi")');

  for (const s of [a1, a2, b1, b2]) s.on("question", (arg, ack) => ack(`${s.auth.name} says ${arg}`));
  b2.off("question");
  b2.on("question", (arg, ack) => ack({ name: "b2", bytes: Buffer.from([0xca, 0xfe]) }));
  const replies = await withTimeout(ioA.timeout(2000).emitWithAck("question", 42), "emitWithAck");
  if (replies.length !== 4) throw new Error(`emitWithAck: ${replies.length} replies`);
  await endOp("classic", "broadcast_with_ack", 'io.timeout(2000).emitWithAck("question", 42): NUMSUB, the BROADCAST request (msgpack), each server\'s BROADCAST_CLIENT_COUNT (JSON), each client\'s BROADCAST_ACK (msgpack, one binary)');

  const r3 = await withTimeout(ioA.to("r3").timeout(2000).emitWithAck("question", "r3?"), "emitWithAck r3");
  if (r3.length !== 1) throw new Error(`emitWithAck r3: ${r3.length}`);
  await endOp("classic", "broadcast_with_ack_room", 'io.to("r3").timeout(2000).emitWithAck(...): the origin counts 0 clients');

  const fetched = await withTimeout(ioA.in("r1").fetchSockets(), "fetchSockets");
  if (fetched.length !== 2) throw new Error(`fetchSockets: ${fetched.length}`);
  await endOp("classic", "fetch_sockets", 'io.in("r1").fetchSockets(): NUMSUB, REMOTE_FETCH request, a response per other server (id, handshake, rooms, data)');

  await withTimeout(ioA.except("r1").fetchSockets(), "fetchSockets except");
  await endOp("classic", "fetch_sockets_except", 'io.except("r1").fetchSockets()');

  const remoteB1 = fetched.find((s) => s.id === b1.id);
  p = [receive(b1, "direct")];
  remoteB1.emit("direct", 1);
  await Promise.all(p);
  await endOp("classic", "remote_socket_emit", 'remoteSocket.emit("direct", 1) on a fetched socket of B: flags {expectSingleResponse: true}');

  const single = await withTimeout(remoteB1.timeout(2000).emitWithAck("question", "direct"), "remote emitWithAck");
  if (single !== "b1 says direct") throw new Error(`remote emitWithAck: ${JSON.stringify(single)}`);
  await endOp("classic", "remote_socket_emit_with_ack", 'remoteSocket.timeout(2000).emitWithAck("question", "direct"): one reply, not a list');

  p = [once(B.io.of("/").adapter, "join-room"), once(A.io.of("/").adapter, "join-room")];
  ioA.in("r2").socketsJoin("r9");
  await withTimeout(Promise.all(p), "socketsJoin");
  await endOp("classic", "sockets_join", 'io.in("r2").socketsJoin("r9"): REMOTE_JOIN, applied by every server (the origin too, when it hears it back)');

  p = [once(B.io.of("/").adapter, "leave-room"), once(A.io.of("/").adapter, "leave-room")];
  ioA.in("r9").socketsLeave(["r9"]);
  await withTimeout(Promise.all(p), "socketsLeave");
  await endOp("classic", "sockets_leave", 'io.in("r9").socketsLeave(["r9"])');

  const heardB = once(B.io.of("/"), "note");
  ioA.serverSideEmit("note", 1, { two: [2] });
  await withTimeout(heardB, "serverSideEmit");
  await endOp("classic", "server_side_emit", 'io.serverSideEmit("note", 1, {two: [2]})');

  const who = await withTimeout(ioA.serverSideEmitWithAck("who"), "serverSideEmitWithAck");
  if (JSON.stringify(who) !== '["B"]') throw new Error(`serverSideEmitWithAck: ${JSON.stringify(who)}`);
  await endOp("classic", "server_side_emit_with_ack", 'io.serverSideEmitWithAck("who"): NUMSUB, SERVER_SIDE_EMIT with requestId, the reply on the response channel');

  const allRooms = await withTimeout(A.io.of("/").adapter.allRooms(), "allRooms");
  if (!allRooms.has("r3")) throw new Error("allRooms misses r3");
  await endOp("classic", "all_rooms", "adapter.allRooms(): NUMSUB, ALL_ROOMS, the rooms of each other server");

  const count = await withTimeout(A.io.of("/").adapter.serverCount(), "serverCount");
  if (count !== 2) throw new Error(`serverCount ${count}`);
  await endOp("classic", "server_count", "adapter.serverCount(): PUBSUB NUMSUB <key>-request#<nsp>#");

  // 8.x never sends SOCKETS (the 6.x clients() API) but still answers it: a hand-made request shows the answer.
  await control.publish("socket.io-request#/#", JSON.stringify({ uid: "capture", requestId: "capture1", type: 0, rooms: ["r1"] }));
  await monitor.until((c) => c[1]?.toString() === "socket.io-response#/#" && c[2]?.toString().includes("capture1") && c[2].toString().includes(b1.id), "SOCKETS reply");
  await endOp("classic", "sockets_request_by_hand", 'a hand-made SOCKETS request (type 0, never sent by 8.x): each server answers {requestId, sockets: [ids]}');

  // ---------------- the emitter ----------------
  const emitter = new Emitter(control);
  p = [receive(b1, "e_all"), receive(a1, "e_all")];
  emitter.emit("e_all", 1, "two");
  await Promise.all(p);
  await endOp("emitter", "emit", 'emitter.emit("e_all", 1, "two"): uid "emitter", opts key order rooms, flags, except');

  p = [receive(b1, "e_room")];
  emitter.to("r3").emit("e_room", { a: 1 });
  await Promise.all(p);
  await endOp("emitter", "emit_room", 'emitter.to("r3").emit(...)');

  p = [receive(b2, "e_rooms")];
  emitter.to(["r1", "r2"]).except("r3").emit("e_rooms");
  await Promise.all(p);
  await endOp("emitter", "emit_rooms_except", 'emitter.to(["r1","r2"]).except("r3").emit("e_rooms")');

  p = [receive(b1, "e_vol")];
  emitter.volatile.compress(true).emit("e_vol", Buffer.from([0xff, 0]));
  await Promise.all(p);
  await endOp("emitter", "emit_flags_binary", 'emitter.volatile.compress(true).emit("e_vol", <bytes>)');

  p = [receive(cb, "e_chat")];
  emitter.of("/chat").emit("e_chat", "hi");
  await Promise.all(p);
  await endOp("emitter", "emit_namespace", 'emitter.of("/chat").emit("e_chat", "hi")');

  p = [once(B.io.of("/").adapter, "join-room")];
  emitter.in("r3").socketsJoin("r8");
  await withTimeout(Promise.all(p), "emitter socketsJoin");
  await endOp("emitter", "sockets_join", 'emitter.in("r3").socketsJoin("r8"): REMOTE_JOIN without uid');

  p = [once(B.io.of("/").adapter, "leave-room")];
  emitter.in("r8").socketsLeave("r8");
  await withTimeout(Promise.all(p), "emitter socketsLeave");
  await endOp("emitter", "sockets_leave", 'emitter.in("r8").socketsLeave("r8")');

  const heard = [once(B.io.of("/"), "enote"), once(A.io.of("/"), "enote")];
  emitter.serverSideEmit("enote", { x: 1 });
  await withTimeout(Promise.all(heard), "emitter serverSideEmit");
  await endOp("emitter", "server_side_emit", 'emitter.serverSideEmit("enote", {x: 1}): uid "emitter", heard by every server');

  const r2gone = [receive(b2, "disconnect"), receive(a2, "disconnect")];
  emitter.in("r2").except("r1").disconnectSockets(true);
  await Promise.all(r2gone);
  await endOp("emitter", "disconnect_sockets", 'emitter.in("r2").except("r1").disconnectSockets(true)');

  const b1gone = receive(b1, "disconnect");
  ioA.in("r3").disconnectSockets(true);
  await b1gone;
  await endOp("classic", "disconnect_sockets", 'io.in("r3").disconnectSockets(true): REMOTE_DISCONNECT');

  const classicMessages = psubSeen.filter(([ch]) => ch !== "capture-marker");
  await A.close();
  await B.close();
  await endOp("classic", "close", "both servers close their adapters (UNSUBSCRIBE / PUNSUBSCRIBE)");

  // ---------------- sharded adapter ----------------
  const C = await startServer({ redisUrl: redis.url, name: "C", adapter: "sharded" });
  const D = await startServer({ redisUrl: redis.url, name: "D", adapter: "sharded" });
  cleanup.push(() => C.close(), () => D.close());
  const c1 = await client(C.port, "/", "c1", ["r1"]);
  const d1 = await client(D.port, "/", "d1", ["r1", "r3"]);
  const d2 = await client(D.port, "/", "d2", ["r2"]);
  await endOp("sharded", "startup", 'two servers: SSUBSCRIBE <prefix>#<nsp># and <prefix>#<nsp>#<uid>#, and (mode "dynamic") <prefix>#<nsp>#<room># for each public room created');
  const ioC = C.io;
  const sockC1 = ioC.of("/").sockets.get(c1.id);

  p = [receive(d1, "hello"), receive(d2, "hello")];
  ioC.emit("hello", 1, { two: 2 });
  await Promise.all(p);
  await endOp("sharded", "broadcast", 'io.emit("hello", 1, {two: 2}): JSON (no binary)');

  p = [receive(d1, "room")];
  ioC.to("r3").emit("room", "three");
  await Promise.all(p);
  await endOp("sharded", "broadcast_one_room", 'io.to("r3").emit(...): the room\'s dynamic channel');

  p = [receive(d1, "private")];
  ioC.to(d1.id).emit("private", 1);
  await Promise.all(p);
  await endOp("sharded", "broadcast_to_socket_id", "io.to(<socket id>).emit: a private room goes to the main channel");

  p = [receive(d2, "rooms")];
  sockC1.to(["r1", "r2"]).except("r3").emit("rooms", null);
  await Promise.all(p);
  await endOp("sharded", "socket_to_rooms_except", 'socket.to(["r1","r2"]).except("r3").emit(...)');

  p = [receive(d1, "bin")];
  ioC.volatile.emit("bin", Buffer.from([1, 2, 3]));
  await Promise.all(p);
  await endOp("sharded", "broadcast_binary", "a broadcast with binary: msgpack");

  for (const s of [c1, d1, d2]) s.on("question", (arg, ack) => ack(`${s.auth.name} says ${arg}`));
  const sreplies = await withTimeout(ioC.timeout(2000).emitWithAck("question", 1), "sharded emitWithAck");
  if (sreplies.length !== 3) throw new Error(`sharded emitWithAck: ${sreplies.length}`);
  await endOp("sharded", "broadcast_with_ack", "io.timeout(2000).emitWithAck: SHARDNUMSUB, BROADCAST with requestId, BROADCAST_CLIENT_COUNT and BROADCAST_ACK on the origin's response channel");

  const sfetched = await withTimeout(ioC.in("r1").fetchSockets(), "sharded fetchSockets");
  if (sfetched.length !== 2) throw new Error(`sharded fetchSockets: ${sfetched.length}`);
  await endOp("sharded", "fetch_sockets", 'io.in("r1").fetchSockets()');

  p = [once(D.io.of("/").adapter, "join-room")];
  ioC.in("r2").socketsJoin("r9");
  await withTimeout(Promise.all(p), "sharded socketsJoin");
  await endOp("sharded", "sockets_join", 'io.in("r2").socketsJoin("r9")');

  p = [once(D.io.of("/").adapter, "leave-room")];
  ioC.in("r9").socketsLeave("r9");
  await withTimeout(Promise.all(p), "sharded socketsLeave");
  await endOp("sharded", "sockets_leave", 'io.in("r9").socketsLeave("r9")');

  const heardD = once(D.io.of("/"), "note");
  ioC.serverSideEmit("note", [1]);
  await withTimeout(heardD, "sharded serverSideEmit");
  await endOp("sharded", "server_side_emit", 'io.serverSideEmit("note", [1])');

  const swho = await withTimeout(ioC.serverSideEmitWithAck("who"), "sharded serverSideEmitWithAck");
  if (JSON.stringify(swho) !== '["D"]') throw new Error(`sharded serverSideEmitWithAck: ${JSON.stringify(swho)}`);
  await endOp("sharded", "server_side_emit_with_ack", 'io.serverSideEmitWithAck("who")');

  const d1gone = receive(d1, "disconnect");
  ioC.in("r3").disconnectSockets(true);
  await d1gone;
  await endOp("sharded", "disconnect_sockets", 'io.in("r3").disconnectSockets(true)');

  await C.close();
  await D.close();
  await endOp("sharded", "close", "both servers close: SUNSUBSCRIBE");

  // ---------------- the vectors ----------------
  const encoder = new Encoder();
  const text = (b) => b.toString("utf8");
  function decodePayload(buf) {
    if (buf[0] === 0x7b) return { encoding: "json", decoded: JSON.parse(text(buf)) };
    return { encoding: "msgpack", decoded: notepack.decode(buf) };
  }
  // What the Socket.IO layer writes to local clients for a packet that came over Redis (socket.io-parser).
  function fanout(packet, nsp) {
    const p = { ...packet, nsp: packet.nsp ?? nsp };
    return encoder.encode(p).map((x) => (typeof x === "string" ? x : { binary: Buffer.from(x).toString("hex") }));
  }

  const classicBytes = new Map();
  for (const [ch, buf] of classicMessages) {
    const key = `${ch}\u0000${buf.toString("hex")}`;
    classicBytes.set(key, (classicBytes.get(key) ?? 0) + 1);
  }

  const messages = [];
  const outOps = [];
  for (const op of ops) {
    const commands = [];
    for (const c of op.commands) {
      const name = text(c[0]).toUpperCase();
      commands.push([name, ...c.slice(1).map((a) => (name.endsWith("PUBLISH") && a === c[2] ? `<${a.length} bytes>` : text(a)))]);
      if (name !== "PUBLISH" && name !== "SPUBLISH") continue;
      const channel = text(c[1]);
      const raw = c[2];
      const { encoding, decoded } = decodePayload(raw);
      const m = { mode: op.mode, op: op.name, command: name, channel, encoding, hex: raw.toString("hex"), decoded: toJson(decoded) };
      const nspOf = (ch) => ch.split("#")[1];
      if (op.mode !== "sharded" && Array.isArray(decoded)) m.socketio = fanout(decoded[1], nspOf(channel));
      if (op.mode !== "sharded" && decoded?.type === 7) m.socketio = fanout(decoded.packet, nspOf(channel));
      if (op.mode === "sharded" && decoded?.type === 3) m.socketio = fanout(decoded.data.packet, decoded.nsp);
      if (name === "PUBLISH") {
        const key = `${channel}\u0000${m.hex}`;
        const n = classicBytes.get(key) ?? 0;
        if (n === 0) throw new Error(`MONITOR saw a PUBLISH that PSUBSCRIBE did not: ${channel}`);
        classicBytes.set(key, n - 1);
      }
      messages.push(m);
    }
    outOps.push({ mode: op.mode, name: op.name, description: op.description, commands });
  }
  const pkg = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"))).version;
  const doc = {
    generator: "tests/cluster/capture_vectors.mjs",
    versions: Object.fromEntries(
      ["socket.io", "socket.io-adapter", "socket.io-parser", "@socket.io/redis-adapter", "@socket.io/redis-emitter", "notepack.io", "redis"].map((n) => [n, pkg(n)]),
    ),
    redis_server: (await control.info("server")).match(/redis_version:(\S+)/)[1],
    notes: [
      "hex is the exact payload of the PUBLISH/SPUBLISH; decoded is notepack.decode (msgpack) or JSON.parse (payloads starting with '{'), with bytes as {\"binary\": hex}, undefined as null, non-finite numbers as {\"number\": \"NaN\"}",
      "socketio is what socket.io-parser's Encoder makes of the broadcast packet for local clients: the packet text, then binary attachments",
      "ops lists every command each operation sent to Redis, in order (MONITOR); payloads of PUBLISH are shown by size",
    ],
    servers: { A: A.uids, B: B.uids, C: C.uids, D: D.uids, emitter: "emitter" },
    ops: outOps,
    messages,
  };
  writeFileSync(outPath, JSON.stringify(doc, null, 1) + "\n");
  console.log(`wrote ${messages.length} messages in ${outOps.length} operations to ${outPath}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  for (const f of cleanup.reverse()) {
    try { await f(); } catch { /* already closed */ }
  }
  await redis.stop();
  process.exit(failed ? 1 : 0);
}
