// Writes tests/vectors/msgpack_packets.json: packets as socket.io-msgpack-parser's Encoder writes them (the bytes
// the official client sends and Node's server sends), for rust/socketio/msgpack_tests.rs. Run from tests/node:
//   node capture_msgpack_vectors.mjs > ../vectors/msgpack_packets.json
import parser from "socket.io-msgpack-parser";

const hex = (packet) => Buffer.from(new parser.Encoder().encode(packet)[0]).toString("hex");
const bin = (s) => Buffer.from(s);

// What the client sends (socket.io-client's packet objects, in its member order).
const client = [
  { note: "CONNECT without auth", packet: { type: 0, data: undefined, nsp: "/" } },
  { note: "CONNECT with auth", packet: { type: 0, data: { token: "abc", n: 1.5 }, nsp: "/admin" } },
  { note: "EVENT", packet: { type: 2, data: ["chat", { room: "a", text: "hi" }], nsp: "/" } },
  { note: "EVENT with an ack id", packet: { type: 2, data: ["echo", 1, "two", null, true], id: 7, nsp: "/" } },
  { note: "EVENT with binary, nested", packet: { type: 2, data: ["up", bin("ab"), { f: [bin("c")] }], nsp: "/x" } },
  { note: "EVENT with floats", packet: { type: 2, data: ["f", 3.0, 0.5, -1e300, NaN, Infinity, 2 ** 60], nsp: "/" } },
  { note: "EVENT with a numeric name", packet: { type: 2, data: [42, "x"], nsp: "/" } },
  { note: "ACK", packet: { type: 3, data: ["ok", bin("z")], id: 3, nsp: "/" } },
  { note: "DISCONNECT", packet: { type: 1, nsp: "/admin" } },
];

// What Node's server sends for the same calls (its packet objects, in its member order).
const server = [
  { note: "CONNECT reply", packet: { type: 0, data: { sid: "abc" }, nsp: "/" }, data: '{"sid":"abc"}' },
  { note: "CONNECT_ERROR", packet: { type: 4, data: { message: "no", data: { a: 1 } }, nsp: "/x" },
    data: '{"message":"no","data":{"a":1}}' },
  { note: "EVENT", packet: { type: 2, data: ["news", 1, "a", [true, null]], nsp: "/" }, data: '["news",1,"a",[true,null]]' },
  { note: "EVENT with an ack id", packet: { type: 2, data: ["q", 0.25], id: 12, nsp: "/" }, data: '["q",0.25]', id: 12 },
  { note: "EVENT with binary", packet: { type: 2, data: ["b", bin("hi"), { x: bin("") }], nsp: "/n" },
    data: '["b",{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]', attachments: ["6869", ""] },
  { note: "ACK", packet: { id: 5, type: 3, data: ["done", 2], nsp: "/" }, data: '["done",2]', id: 5 },
  { note: "DISCONNECT", packet: { type: 1, nsp: "/admin" } },
];

const out = {
  client: client.map(({ note, packet }) => ({ note, hex: hex(packet) })),
  server: server.map(({ note, packet, data, id, attachments }) => ({
    note, type: packet.type, nsp: packet.nsp, data: data ?? null, id: id ?? null, attachments: attachments ?? [],
    hex: hex(packet),
  })),
};
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
