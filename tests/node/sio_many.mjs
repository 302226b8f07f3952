// Many socket.io-client connections in one process, for the worker tests. Usage:
//   node sio_many.mjs <url> --clients N --rounds R [--transports polling] [--window ms]
// Each client connects, then sends R acked "echo" events one after the other. Prints JSON lines:
//   {"event":"connected","count":N}   when all are connected (ids and transports in "clients")
//   {"event":"done","acks":A,"errors":[..],"connect_errors":E,"reconnects":K}
// then obeys commands on stdin: {"cmd":"emit","client":i,"name":..,"args":[..]} -> {"event":"ack","args":[..]}
//   (or {"event":"ack_error","message":..}),
//   {"cmd":"emit_all","name":..} -> {"event":"acks","args":[per-client ack, null on error]},
//   {"cmd":"counts"} -> {"event":"counts","bcast":[per-client counts of "bcast" events],"connected":C},
//   {"cmd":"engines"} -> {"event":"engines","ids":[per-client Engine.IO session id, null when disconnected]},
//   and reports {"event":"upgraded","client":i} when a client's transport upgrades,
//   {"event":"bcast","client":i,"value":v} for each "bcast" event a client receives,
//   {"cmd":"exit"}. Every client answers "question" acks with its index and a byte. "emit" and "emit_all" take an optional
//   "timeout" (ms, default 10000); "emit_all" an optional "clients" (the indexes that emit, in that order); every
//   command's "id", if it has one, is copied into its answer.
import { io } from "socket.io-client";
import { out, parseArgs, readCommands } from "./lib.mjs";

const { url, options } = parseArgs(process.argv.slice(2));
const n = Number(options.clients ?? 10);
const rounds = Number(options.rounds ?? 10);
const opts = { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };
if (options.transports) opts.transports = options.transports.split(",");

const clients = [];
const bcast = new Array(n).fill(0);
const errors = [];
let connectErrors = 0;
let reconnects = 0;
let connected = 0;
let announced = false;

for (let i = 0; i < n; i++) {
  const s = io(url, opts);
  clients.push(s);
  let first = true;
  s.on("connect", () => {
    if (first) {
      first = false;
      connected++;
      if (connected === n && !announced) {
        announced = true;
        out({ event: "connected", count: n, clients: clients.map((c) => ({ id: c.id, transport: c.io.engine.transport.name })) });
        run();
      }
    } else {
      reconnects++;
      out({ event: "reconnected", client: i });
    }
  });
  s.on("connect_error", (e) => { connectErrors++; if (connectErrors < 5) errors.push(String(e.message)); });
  s.on("bcast", (value) => { bcast[i]++; out({ event: "bcast", client: i, value }); });
  s.io.on("open", () => s.io.engine.on("upgrade", (t) => out({ event: "upgraded", client: i, transport: t.name })));
  s.on("question", (ack) => ack(i, Buffer.from([i % 256])));
  s.on("disconnect", (reason) => out({ event: "disconnect", client: i, reason }));
}

async function run() {
  let acks = 0;
  await Promise.all(clients.map(async (s, i) => {
    for (let r = 0; r < rounds; r++) {
      try {
        const got = await s.timeout(10000).emitWithAck("echo", `${i}:${r}`);
        if (got === `${i}:${r}`) acks++; else errors.push(`bad ack ${got}`);
      } catch (e) {
        errors.push(`client ${i} round ${r}: ${e.message}`);
      }
    }
  }));
  out({ event: "done", acks, errors: errors.slice(0, 10), connect_errors: connectErrors, reconnects });
}

readCommands(async (cmd) => {
  const answer = (obj) => out(cmd.id === undefined ? obj : { ...obj, id: cmd.id });
  const timeout = cmd.timeout ?? 10000;
  if (cmd.cmd === "emit") {
    try {
      const args = await clients[cmd.client].timeout(timeout).emitWithAck(cmd.name, ...(cmd.args ?? []));
      answer({ event: "ack", args: [args] });
    } catch (e) {
      answer({ event: "ack_error", message: e.message });
    }
  } else if (cmd.cmd === "emit_all") {
    // Every client (or those listed) emits; the acks come back in that order.
    const which = cmd.clients ? cmd.clients.map((i) => clients[i]) : clients;
    const acks = await Promise.all(which.map((c) => c.timeout(timeout).emitWithAck(cmd.name, ...(cmd.args ?? [])).catch((e) => null)));
    answer({ event: "acks", args: acks });
  } else if (cmd.cmd === "counts") {
    answer({ event: "counts", bcast, connected: clients.filter((c) => c.connected).length });
  } else if (cmd.cmd === "engines") {
    answer({ event: "engines", ids: clients.map((c) => (c.connected ? c.io.engine.id : null)) });
  } else if (cmd.cmd === "exit") {
    clients.forEach((c) => c.disconnect());
    process.exit(0);
  }
}, () => { clients.forEach((c) => c.disconnect()); process.exit(0); });
