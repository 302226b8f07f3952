// Shared plumbing for the test clients: JSON lines out, JSON-line commands in,
// and the {"binary":"<hex>"} convention for bytes (anywhere nested).
import { createInterface } from "node:readline";

export function out(obj) {
  // stdout writes to a pipe are synchronous on Linux, so nothing is lost on exit.
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function isBytes(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function bytesToHex(v) {
  if (v instanceof ArrayBuffer) return Buffer.from(v).toString("hex");
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
}

// Wire value -> JSON-safe value: bytes become {"binary":"<hex>"}.
export function toJson(v) {
  if (isBytes(v)) return { binary: bytesToHex(v) };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) if (typeof x !== "function") o[k] = toJson(x);
    return o;
  }
  return v;
}

// JSON value from a command -> wire value: {"binary":"<hex>"} becomes a Buffer, and {"raw_json":"<text>"} the
// JSON text itself in what JSON.stringify writes (JSON.rawJSON: node --harmony-json-parse-with-source), for
// numbers a JavaScript value cannot hold, such as 1e400.
export function fromJson(v) {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "binary" && typeof v.binary === "string") {
      return Buffer.from(v.binary, "hex");
    }
    if (keys.length === 1 && keys[0] === "raw_json" && typeof v.raw_json === "string") {
      return JSON.rawJSON(v.raw_json);
    }
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = fromJson(x);
    return o;
  }
  return v;
}

// `<url> --key value ...` -> { url, options }. Values stay strings.
export function parseArgs(argv) {
  const [url, ...rest] = argv;
  if (!url || url.startsWith("--")) throw new Error("missing <url>");
  const options = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || rest[i + 1] === undefined) {
      throw new Error(`bad option near ${rest[i]}`);
    }
    options[rest[i].slice(2)] = rest[i + 1];
  }
  return { url, options };
}

export function parseBool(s, name) {
  if (s === "true") return true;
  if (s === "false") return false;
  throw new Error(`--${name} must be true or false`);
}

// Calls onCommand(obj) for every JSON line on stdin; onEnd() at EOF.
export function readCommands(onCommand, onEnd) {
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ event: "bad_command", line, message: e.message });
      return;
    }
    try {
      onCommand(cmd);
    } catch (e) {
      out({ event: "bad_command", line, message: e.message });
    }
  });
  rl.on("close", onEnd);
}

// Runs readCommands with one handler per command name: {"cmd": name, ...} calls handlers[name](cmd); an unknown
// name is reported as a bad_command. "exit" and EOF call exit.
export function dispatchCommands(handlers, exit) {
  readCommands((cmd) => {
    if (cmd.cmd === "exit") return exit();
    const handler = Object.hasOwn(handlers, cmd.cmd) ? handlers[cmd.cmd] : undefined;
    if (handler) handler(cmd);
    else out({ event: "bad_command", line: JSON.stringify(cmd), message: "unknown cmd" });
  }, exit);
}

// The ack_reply command of the Socket.IO clients: what later ack requests of event `name` are answered with.
export function ackReplyCommand(ackReplies) {
  return (cmd) => {
    ackReplies.set(cmd.name, cmd.args ?? []);
    out({ event: "ack_reply_set", name: cmd.name });
  };
}

export function errorJson(err) {
  if (err instanceof Error) {
    const o = { message: err.message };
    if (err.description !== undefined) o.description = describe(err.description);
    if (err.type !== undefined) o.type = err.type;
    return o;
  }
  return { message: describe(err) };
}

function describe(d) {
  if (d instanceof Error) return d.message;
  if (d && typeof d === "object" && d.message !== undefined) return String(d.message);
  return typeof d === "object" ? toJson(d) : d;
}
