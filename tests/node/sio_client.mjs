// Socket.IO test client. Usage:
//   node sio_client.mjs <url> [--nsp /x] [--transports polling,websocket] [--auth <json>]
//                       [--reconnection true|false] [--timeout ms] [--withCredentials true|false]
//                       [--parser default|msgpack]  (msgpack: socket.io-msgpack-parser, as a Node app would set it)
// Out (stdout, JSON lines):
//   {"event":"connect","id":..,"transport":..,"recovered":bool}   {"event":"connect_error","message":..,"data":..}
//   {"event":"disconnect","reason":..,"description":..}   {"event":"upgrade","transport":"websocket"}
//   {"event":"recv","name":..,"args":[..],"ack":bool}  (an ack request is answered at once, see ack_reply)
//   {"event":"ack","id":..,"args":[..]}   {"event":"ack_timeout","id":..}   {"event":"bad_command",..}
// In (stdin, JSON lines):
//   {"cmd":"emit","name":..,"args":[..],"ack":true|false,"timeout":ms?,"id":<any>}
//   {"cmd":"ack_reply","name":..,"args":[..]}  (args sent back to later ack requests of event `name`,
//                                               confirmed with {"event":"ack_reply_set","name":..};
//                                               default ["ok"])
//   {"cmd":"connect"} | {"cmd":"disconnect"} | {"cmd":"exit"}.  EOF on stdin exits too.
//   {"cmd":"transport"}: answered {"event":"transport","name":..,"extensions":..}, the WebSocket extensions the
//     client and the server agreed on ("permessage-deflate", or ""; null on long-polling).
//   {"cmd":"break","reconnect":true|false,"url":..?}: a network break: the engine's transport closes under the
//     socket, and the client reconnects as after any (with "reconnect": false it waits for {"cmd":"connect"}; to
//     "url" when given), sending its pid and offset so that the server can recover its state.
// Bytes are {"binary":"<hex>"} anywhere in args, both ways; {"raw_json":"1e400"} in args is sent as that JSON
// text (run node with --harmony-json-parse-with-source).
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { out, toJson, fromJson, parseArgs, parseBool, dispatchCommands, ackReplyCommand, errorJson } from "./lib.mjs";

const { url, options } = parseArgs(process.argv.slice(2));
const opts = { forceNew: true };
if (options.transports) opts.transports = options.transports.split(",");
if (options.auth) opts.auth = fromJson(JSON.parse(options.auth));
if (options.reconnection) opts.reconnection = parseBool(options.reconnection, "reconnection");
if (options.timeout) opts.timeout = Number(options.timeout);
// In Node.js, engine.io-client keeps the server's cookies (a cookie jar) and sends them back only with this.
if (options.withCredentials) opts.withCredentials = parseBool(options.withCredentials, "withCredentials");
if (options.parser === "msgpack") opts.parser = msgpackParser;
else if (options.parser && options.parser !== "default") throw new Error(`unknown parser ${options.parser}`);
const nsp = options.nsp ?? "/";

const socket = io(url.replace(/\/+$/, "") + nsp, opts);
const ackReplies = new Map();

socket.on("connect", () =>
  out({ event: "connect", id: socket.id, transport: socket.io.engine.transport.name, recovered: socket.recovered }),
);
// Each engine the manager opens (one per reconnection) reports its upgrade to WebSocket.
socket.io.on("open", () =>
  socket.io.engine.on("upgrade", (transport) => out({ event: "upgrade", transport: transport.name })),
);
socket.on("connect_error", (err) =>
  out({ event: "connect_error", message: err.message, data: toJson(err.data ?? null) }),
);
socket.on("disconnect", (reason, details) => {
  const ev = { event: "disconnect", reason };
  if (details !== undefined) ev.description = errorJson(details.description ?? details).message;
  out(ev);
});
socket.onAny((name, ...args) => {
  // socket.io-client appends the ack callback as the last argument when the server asked for one.
  const ack = typeof args.at(-1) === "function" ? args.pop() : null;
  out({ event: "recv", name, args: toJson(args), ack: ack !== null });
  if (ack) ack(...fromJson(ackReplies.get(name) ?? ["ok"]));
});

function emit(cmd) {
  const args = fromJson(cmd.args ?? []);
  if (!cmd.ack) {
    socket.emit(cmd.name, ...args);
  } else if (cmd.timeout !== undefined) {
    socket.timeout(cmd.timeout).emit(cmd.name, ...args, (err, ...resp) => {
      if (err) out({ event: "ack_timeout", id: cmd.id });
      else out({ event: "ack", id: cmd.id, args: toJson(resp) });
    });
  } else {
    socket.emit(cmd.name, ...args, (...resp) => out({ event: "ack", id: cmd.id, args: toJson(resp) }));
  }
}

function exit() {
  socket.disconnect();
  process.exit(0);
}

dispatchCommands(
  {
    emit,
    ack_reply: ackReplyCommand(ackReplies),
    connect: () => socket.connect(),
    disconnect: () => socket.disconnect(),
    break: (cmd) => {
      if (cmd.url) socket.io.uri = cmd.url; // reconnect elsewhere: another worker of the same server
      socket.io.reconnection(cmd.reconnect !== false);
      socket.io.engine.transport.close();
    },
    transport: () => {
      const transport = socket.io.engine.transport;
      out({ event: "transport", name: transport.name, extensions: transport.ws?.extensions ?? null });
    },
  },
  exit,
);
