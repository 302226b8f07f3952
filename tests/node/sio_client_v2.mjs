// socket.io-client 2.x (Engine.IO v3, Socket.IO v4 protocol) test client: sio_client.mjs's JSON lines, for a
// server with allow_eio3. Usage:
//   node sio_client_v2.mjs <url> [--nsp /x] [--transports polling,websocket] [--query <json>]
//                          [--forceBase64 true|false] [--reconnection true|false]
// Out (stdout, JSON lines):
//   {"event":"connect","id":..,"transport":..}   {"event":"error","data":..} (the server refused the namespace)
//   {"event":"connect_error","message":..}   {"event":"disconnect","reason":..}
//   {"event":"upgrade","transport":"websocket"}   {"event":"recv","name":..,"args":[..],"ack":bool}
//   {"event":"ack","id":..,"args":[..]}   {"event":"pong"} (the server answered the client's ping)
//   {"event":"bad_command",..}
// In (stdin, JSON lines): {"cmd":"emit","name":..,"args":[..],"ack":true|false,"id":<any>},
//   {"cmd":"ack_reply","name":..,"args":[..]}, {"cmd":"disconnect"}, {"cmd":"exit"}; EOF exits too.
// Bytes are {"binary":"<hex>"} anywhere in args, both ways.
import { createRequire } from "node:module";
import { out, toJson, fromJson, parseArgs, parseBool, dispatchCommands, ackReplyCommand } from "./lib.mjs";

const io = createRequire(import.meta.url)("socket.io-client-v2");
const { url, options } = parseArgs(process.argv.slice(2));
const opts = { forceNew: true };
if (options.transports) opts.transports = options.transports.split(",");
if (options.query) opts.query = JSON.parse(options.query);
if (options.forceBase64) opts.forceBase64 = parseBool(options.forceBase64, "forceBase64");
if (options.reconnection) opts.reconnection = parseBool(options.reconnection, "reconnection");
const nsp = options.nsp ?? "/";

const socket = io(url.replace(/\/+$/, "") + nsp, opts);
const ackReplies = new Map();

socket.on("connect", () => out({ event: "connect", id: socket.id, transport: socket.io.engine.transport.name }));
socket.io.on("open", () =>
  socket.io.engine.on("upgrade", (transport) => out({ event: "upgrade", transport: transport.name })),
);
socket.on("error", (data) => out({ event: "error", data: toJson(data) }));
socket.on("connect_error", (err) => out({ event: "connect_error", message: String(err && err.message) }));
socket.on("disconnect", (reason) => out({ event: "disconnect", reason }));
socket.on("pong", () => out({ event: "pong" }));
// 2.x has no onAny: every incoming event passes through onevent, with the ack callback made from its id.
socket.onevent = (packet) => {
  const [name, ...args] = packet.data ?? [];
  const ack = packet.id != null ? socket.ack(packet.id) : null;
  out({ event: "recv", name, args: toJson(args), ack: ack !== null });
  if (ack) ack(...fromJson(ackReplies.get(name) ?? ["ok"]));
};

function exit() {
  socket.close();
  process.exit(0);
}

dispatchCommands(
  {
    emit: (cmd) => {
      const args = fromJson(cmd.args ?? []);
      if (cmd.ack) socket.emit(cmd.name, ...args, (...resp) => out({ event: "ack", id: cmd.id, args: toJson(resp) }));
      else socket.emit(cmd.name, ...args);
    },
    ack_reply: ackReplyCommand(ackReplies),
    disconnect: () => socket.disconnect(),
  },
  exit,
);
