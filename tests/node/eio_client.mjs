// Engine.IO test client. Usage:
//   node eio_client.mjs <url> [--transports polling,websocket] [--upgrade true|false]
// Out (stdout, JSON lines): {"event":"open","transport":..,"sid":..}, {"event":"upgrade","transport":..},
//   {"event":"message","data":"text"|{"binary":"<hex>"}}, {"event":"close","reason":..,"description":..},
//   {"event":"ping"} for each heartbeat ping the server sends,
//   {"event":"error","message":..}, {"event":"upgrade_error","message":..}, {"event":"bad_command",..}.
// In (stdin, JSON lines): {"cmd":"send","data":"text"} | {"cmd":"send","binary":"<hex>"} |
//   {"cmd":"close"} | {"cmd":"exit"}. EOF on stdin exits too, so keep stdin open (a pipe).
import { Socket } from "engine.io-client";
import { out, toJson, parseArgs, parseBool, dispatchCommands, errorJson } from "./lib.mjs";

const { url, options } = parseArgs(process.argv.slice(2));
const opts = {};
if (options.transports) opts.transports = options.transports.split(",");
if (options.upgrade) opts.upgrade = parseBool(options.upgrade, "upgrade");

const socket = new Socket(url, opts);
socket.on("open", () => out({ event: "open", transport: socket.transport.name, sid: socket.id }));
socket.on("upgrade", (t) => out({ event: "upgrade", transport: t.name }));
socket.on("upgradeError", (e) => out({ event: "upgrade_error", ...errorJson(e) }));
socket.on("message", (data) => out({ event: "message", data: toJson(data) }));
socket.on("ping", () => out({ event: "ping" }));
socket.on("error", (e) => out({ event: "error", ...errorJson(e) }));
socket.on("close", (reason, description) => {
  const ev = { event: "close", reason };
  if (description !== undefined) ev.description = errorJson(description).message;
  out(ev);
});

function exit() {
  socket.close();
  process.exit(0);
}

dispatchCommands(
  {
    send: (cmd) => socket.send(cmd.binary !== undefined ? Buffer.from(cmd.binary, "hex") : cmd.data),
    close: () => socket.close(),
  },
  exit,
);
