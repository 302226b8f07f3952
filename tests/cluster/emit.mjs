// Publishes with @socket.io/redis-emitter, then exits: the cluster tests' Node emitter.
//
//   REDIS_URL=redis://127.0.0.1:6379 node emit.mjs '<json list of operations>'
//
// Operations: {"op":"emit","nsp":"/","rooms":[..],"except":[..],"volatile":bool,"event":..,"args":[..]}
//             {"op":"socketsJoin"|"socketsLeave","rooms":[..],"except":[..],"room":..}
//             {"op":"disconnectSockets","rooms":[..],"close":bool}   {"op":"serverSideEmit","event":..,"args":[..]}
// Bytes are {"binary":"<hex>"} in args. Prints {"event":"done"} once every message is published.
import { createClient } from "redis";
import { Emitter } from "@socket.io/redis-emitter";

function fromJson(v) {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "binary") return Buffer.from(v.binary, "hex");
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJson(x)]));
  }
  return v;
}

const client = createClient({ url: process.env.REDIS_URL });
await client.connect();
const root = new Emitter(client);
for (const o of JSON.parse(process.argv[2])) {
  let op = root.of(o.nsp ?? "/");
  if (o.rooms?.length) op = op.to(o.rooms);
  if (o.except?.length) op = op.except(o.except);
  if (o.volatile) op = op.volatile;
  switch (o.op) {
    case "emit":
      op.emit(o.event, ...fromJson(o.args ?? []));
      break;
    case "socketsJoin":
      op.socketsJoin(o.room);
      break;
    case "socketsLeave":
      op.socketsLeave(o.room);
      break;
    case "disconnectSockets":
      op.disconnectSockets(o.close ?? false);
      break;
    case "serverSideEmit":
      root.of(o.nsp ?? "/").serverSideEmit(o.event, ...fromJson(o.args ?? []));
      break;
    default:
      throw new Error(`unknown op ${o.op}`);
  }
}
await client.quit(); // after every queued PUBLISH has its reply
process.stdout.write(JSON.stringify({ event: "done" }) + "\n");
