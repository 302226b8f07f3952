#!/usr/bin/env python3
"""Capture how the real Node engine.io / socket.io servers answer raw requests.

Starts reference_eio_server.mjs and reference_sio_server.mjs on 127.0.0.1 (a free port each), sends raw HTTP
requests and raw WebSocket frames, and writes what the server answered to tests/vectors/eio_reference.json and
tests/vectors/sio_reference.json. Python 3.11 stdlib only. Run scripts/setup-node-deps.sh first.

    python3 tests/node/capture_reference.py [--only eio|sio]

Session ids are replaced by placeholders (<sid>, <sid2>, <sio_sid>...). Times are rounded to 50 ms; the server
uses pingInterval 300 / pingTimeout 200 / connectTimeout 1000, so "after ~500 ms" means "at ping timeout".
"""

import base64
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors")
KEPT_HEADERS = (
    "content-type",
    "set-cookie",
    "connection",
    "vary",
    "upgrade",
    "sec-websocket-accept",
    "transfer-encoding",
)
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def ms_since(t0):
    return int(round((time.monotonic() - t0) * 1000 / 50.0) * 50)


class Server:
    """A reference Node server; stderr JSON lines are kept as the server log."""

    def __init__(self, script):
        self.proc = subprocess.Popen(
            ["node", script, "0", "127.0.0.1"],
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{script} did not start: {self.proc.stderr.read()}")
        self.port = json.loads(line)["port"]
        self.log = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self):
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"text": line.rstrip("\n")}
            entry["_mono"] = time.monotonic()
            self.log.append(entry)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Case:
    """One recorded scenario: ordered steps plus the server log lines seen meanwhile."""

    def __init__(self, server, name, description):
        self.server, self.port = server, server.port
        self.name, self.description = name, description
        self.steps, self.ids = [], {f"127.0.0.1:{server.port}": "127.0.0.1:<port>"}
        self.t0 = time.monotonic()
        self.log_start = len(server.log)

    def sid(self, value, kind="sid"):
        if value not in self.ids:
            n = sum(1 for v in self.ids.values() if v.startswith(f"<{kind}"))
            self.ids[value] = f"<{kind}>" if n == 0 else f"<{kind}{n + 1}>"
        return self.ids[value]

    def scrub(self, value):
        if isinstance(value, str):
            for real, placeholder in self.ids.items():
                value = value.replace(real, placeholder)
            return value
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        return value

    def step(self, **kw):
        self.steps.append(kw)
        return kw

    def note(self, text):
        self.steps.append({"note": text})

    def result(self):
        time.sleep(0.1)
        for text in strings(self.steps):
            # "0{sid}" is an Engine.IO open packet, "40{sid}" a Socket.IO CONNECT answer.
            for m in re.finditer(r'(?:^|\x1e)(4?)0(?:/[^,{]*,)?\{"sid":"([A-Za-z0-9_-]+)"', text):
                self.sid(m.group(2), "sio_sid" if m.group(1) else "sid")
        entries = self.server.log[self.log_start :]
        for e in entries:  # sessions opened during this case but never seen on the wire
            if e.get("event") in ("connection", "eio_connection") and "sid" in e:
                self.sid(e["sid"])
        log = []
        for entry in entries:
            owner = entry.get("sid", entry.get("id"))
            if owner is not None and owner not in self.ids:
                continue  # a session of an earlier case timing out now
            entry = {k: v for k, v in entry.items() if k != "t"}
            entry["at_ms"] = round((entry.pop("_mono") - self.t0) * 20) * 50
            log.append(entry)
        return self.scrub({"name": self.name, "description": self.description, "steps": self.steps, "server_log": log})


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


# ---------------------------------------------------------------- HTTP


def http_request(method, path, port, headers=(), body=b"", content_length=True):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body and content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def describe_request(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    if len(text) > 300:
        text = text[:200] + f"...<{len(head)} bytes of head>"
    out = {"request": text.replace("\r\n", "\n")}
    if body:
        out["body"] = body.decode("latin-1") if len(body) <= 200 else f"<{len(body)} bytes: {body[:12]!r}...>"
    return out


class Http:
    """A raw HTTP/1.1 connection; several requests may go over one socket (keep-alive)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, raw):
        try:
            self.sock.sendall(raw)
            return None
        except OSError as e:
            return f"send failed: {e.__class__.__name__}"

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_response(self, timeout=2.0):
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            while b"\r\n\r\n" not in self.buf:
                self._fill(deadline)
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                k, _, v = line.partition(":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
            status = int(status_line.split()[1])
            body = self._read_body(status, headers, deadline)
        except TimeoutError:
            return {"no_response_within_ms": int(timeout * 1000), "partial": self.buf.decode("latin-1")}
        except (EOFError, ConnectionResetError):
            return {"tcp_closed_without_response": True, "partial": self.buf.decode("latin-1"), "at_ms": ms_since(t0)}
        kept = {
            k: v[0] if len(v) == 1 else v
            for k, v in headers.items()
            if k in KEPT_HEADERS or k.startswith("access-control-")
        }
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        resp = {
            "status": status,
            "reason": status_line.split(" ", 2)[2] if status_line.count(" ") > 1 else "",
            "headers": dict(sorted(kept.items())),
            "at_ms": ms_since(t0),
        }
        if text is None:
            resp["body_hex"] = body.hex()
        else:
            resp["body"] = text
        return resp

    def _read_body(self, status, headers, deadline):
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if "content-length" in headers:
            n = int(headers["content-length"][0])
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
            return body
        if headers.get("transfer-encoding", [""])[0].lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                n = int(size_line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._fill(deadline)
                body, self.buf = body + self.buf[:n], self.buf[n + 2 :]
                if n == 0:
                    return body
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            body, self.buf = self.buf, b""
            return body

    def tcp_state(self, wait=0.05):
        """'closed' if the server closed the connection after the response, else 'open'."""
        try:
            self.sock.settimeout(wait)
            data = self.sock.recv(65536)
            if not data:
                return "closed"
            self.buf += data
            return "open (extra bytes)"
        except TimeoutError:
            return "open"
        except OSError:
            return "closed (reset)"

    def close(self):
        self.sock.close()


def http(case, raw, timeout=2.0, conn=None, tcp=True):
    """Send one raw request on a new (or given) connection, record request and answer."""
    own = conn is None
    conn = conn or Http(case.port)
    step = describe_request(raw)
    err = conn.send(raw)
    if err:
        step["send_error"] = err
    resp = conn.read_response(timeout)
    if tcp and "status" in resp:
        resp["tcp_after"] = conn.tcp_state()
    step["response"] = resp
    case.steps.append(step)
    if own:
        conn.close()
    return resp


def handshake(case, path="/engine.io/", extra=""):
    resp = http(case, http_request("GET", f"{path}?EIO=4&transport=polling{extra}", case.port), tcp=False)
    sid = json.loads(resp["body"][1:])["sid"]
    case.sid(sid)
    return sid


def q(sid, path="/engine.io/"):
    return f"{path}?EIO=4&transport=polling&sid={sid}"


def post(case, sid, body, path="/engine.io/", headers=(("Content-Type", "text/plain;charset=UTF-8"),), **kw):
    return http(case, http_request("POST", q(sid, path), case.port, headers, body), **kw)


def get(case, sid, path="/engine.io/", **kw):
    return http(case, http_request("GET", q(sid, path), case.port), **kw)


# ---------------------------------------------------------------- WebSocket


class WS:
    def __init__(self, case, path, headers=None, record=True):
        self.case = case
        self.http = Http(case.port)
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 sample: keeps the vectors stable
        hdrs = (
            headers
            if headers is not None
            else [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        key = dict(hdrs).get("Sec-WebSocket-Key", key)
        raw = http_request("GET", path, case.port, hdrs)
        step = describe_request(raw)
        self.http.send(raw)
        resp = self.http.read_response(2.0)
        expected = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        if resp.get("status") == 101:
            resp["accept_matches_rfc6455"] = resp["headers"].get("sec-websocket-accept") == expected
            resp["headers"].pop("sec-websocket-accept", None)
        step["response"] = resp
        self.ok = resp.get("status") == 101
        self.closed = False
        if record:
            case.steps.append(step)

    def send_frame(self, opcode, payload, mask=True, fin=True, rsv=0, record=True, label=None):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        err = self.http.send(head + payload)
        if record:
            desc = {"op": OPCODES.get(opcode, opcode)}
            if label is not None:
                desc["frame"] = label
            if rsv:
                desc["rsv"] = rsv
            if not mask:
                desc["masked"] = False
            entry = {"ws_send": desc}
            if err:
                entry["send_error"] = err
            self.case.steps.append(entry)

    def send_text(self, text, **kw):
        data = text.encode() if isinstance(text, str) else text
        label = kw.pop("label", None)
        if label is None:
            label = text if isinstance(text, str) and len(text) <= 200 else f"<{len(data)} bytes>"
        self.send_frame(1, data, label=label, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(
            2, data, label=kw.pop("label", data.hex() if len(data) <= 100 else f"<{len(data)} bytes>"), **kw
        )

    def _read_frame(self, deadline):
        def need(n):
            while len(self.http.buf) < n:
                self.http._fill(deadline)

        need(2)
        b0, b1 = self.http.buf[0], self.http.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            need(4)
            n, off = struct.unpack("!H", self.http.buf[2:4])[0], 4
        elif n == 127:
            need(10)
            n, off = struct.unpack("!Q", self.http.buf[2:10])[0], 10
        need(off + n)
        payload = self.http.buf[off : off + n]
        self.http.buf = self.http.buf[off + n :]
        return b0 & 0x0F, payload

    def recv(self, duration=1.0, until=None, auto_pong=True, t0=None, record_pings=False):
        """Record frames for `duration` s, until TCP closes, or until until(events) is true.

        With auto_pong, Engine.IO pings ("2") are answered with "3" (recorded only with record_pings)."""
        t0 = t0 or time.monotonic()
        deadline = time.monotonic() + duration
        events = []
        while not self.closed:
            try:
                opcode, payload = self._read_frame(deadline)
            except TimeoutError:
                break
            except (EOFError, ConnectionResetError, BrokenPipeError):
                events.append({"tcp": "closed", "at_ms": ms_since(t0)})
                self.closed = True
                break
            ev = {"op": OPCODES.get(opcode, opcode)}
            if opcode == 1:
                text = payload.decode("utf-8", "replace")
                if auto_pong and text == "2":
                    self.send_text("3", record=False)
                    if record_pings:
                        events.append({"op": "text", "text": "2", "answered": "3", "at_ms": ms_since(t0)})
                    continue
                ev["text"] = text if len(text) <= 300 else f"<{len(payload)} bytes: {text[:40]}...>"
            elif opcode == 8:
                ev["code"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                ev["reason"] = payload[2:].decode("utf-8", "replace")
                # Answer like a browser would, to see whether the server then closes TCP.
                self.send_frame(8, payload[:2], record=False)
                ev["answered"] = "close"
            elif payload:
                ev["hex"] = payload.hex() if len(payload) <= 100 else f"<{len(payload)} bytes>"
            ev["at_ms"] = ms_since(t0)
            events.append(ev)
            if until and until(events):
                break
        self.case.steps.append({"ws_recv": events})
        return events

    def recv_raw(self, duration=0.5):
        """Record the raw bytes that follow the 101 (for answers that are not WebSocket frames)."""
        deadline = time.monotonic() + duration
        try:
            while True:
                self.http._fill(deadline)
        except EOFError:
            closed = True
        except TimeoutError:
            closed = False
        data, self.http.buf = self.http.buf, b""
        self.case.steps.append({"raw_after_101": data.decode("latin-1"), "tcp_closed": closed})

    def close(self):
        self.http.close()


def ws_path(path="/engine.io/", sid=None):
    return f"{path}?EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")


def first_text(events):
    return any(e.get("text") for e in events)


def ws_open(case, path="/engine.io/"):
    """WebSocket-only session; returns (ws, sid) after the open packet."""
    ws = WS(case, ws_path(path))
    events = ws.recv(1.0, until=first_text)
    sid = json.loads(events[0]["text"][1:])["sid"]
    case.sid(sid)
    return ws, sid


# ---------------------------------------------------------------- Engine.IO cases


def eio_cases(server):
    cases = []

    def case(name, description):
        def wrap(fn):
            c = Case(server, name, description)
            try:
                fn(c)
            except Exception as e:  # keep the other cases; the error is part of the record
                c.step(capture_error=f"{e.__class__.__name__}: {e}")
            cases.append(c.result())
            print(f"  {name}", file=sys.stderr)

        return wrap

    P = "/engine.io/"

    def req(method, path, headers=(), body=b"", **kw):
        return http_request(method, path, server.port, headers, body, **kw)

    @case("handshake_polling", "GET handshake over polling: body shape and headers")
    def _(c):
        handshake(c)

    @case("handshake_with_origin", "GET handshake with an Origin header (CORS origin '*')")
    def _(c):
        http(c, req("GET", P + "?EIO=4&transport=polling", [("Origin", "http://example.com")]))

    @case("preflight_options", "OPTIONS preflight with Origin and Access-Control-Request-*")
    def _(c):
        http(
            c,
            req(
                "OPTIONS",
                P + "?EIO=4&transport=polling",
                [
                    ("Origin", "http://example.com"),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "content-type"),
                ],
            ),
        )

    @case("handshake_eio3", "handshake with EIO=3 (allowEIO3 is false)")
    def _(c):
        http(c, req("GET", P + "?EIO=3&transport=polling"))

    @case("handshake_no_eio", "handshake without EIO")
    def _(c):
        http(c, req("GET", P + "?transport=polling"))

    @case("handshake_eio5", "handshake with EIO=5")
    def _(c):
        http(c, req("GET", P + "?EIO=5&transport=polling"))

    @case("unknown_transport", "transport=foo")
    def _(c):
        http(c, req("GET", P + "?EIO=4&transport=foo"))

    @case("no_transport", "no transport parameter")
    def _(c):
        http(c, req("GET", P + "?EIO=4"))

    @case("websocket_get_without_upgrade", "transport=websocket as a plain GET (no Upgrade headers)")
    def _(c):
        http(c, req("GET", P + "?EIO=4&transport=websocket"))

    @case("unknown_sid", "GET and POST with an unknown sid")
    def _(c):
        http(c, req("GET", q("doesnotexist")))
        http(c, req("POST", q("doesnotexist"), [("Content-Type", "text/plain;charset=UTF-8")], b"4hello"))

    @case("post_without_sid", "POST handshake (no sid): bad handshake method")
    def _(c):
        http(c, req("POST", P + "?EIO=4&transport=polling", [("Content-Type", "text/plain;charset=UTF-8")], b"4hello"))

    @case("put_without_sid", "PUT handshake (no sid)")
    def _(c):
        http(c, req("PUT", P + "?EIO=4&transport=polling", body=b"4hello"))

    @case("put_and_delete_with_sid", "PUT / DELETE with a valid sid, then GET on the sid")
    def _(c):
        sid = handshake(c)
        http(c, req("PUT", q(sid), body=b"4hello"))
        http(c, req("DELETE", q(sid)))
        get(c, sid, timeout=1.0)

    @case("transport_mismatch", "valid polling sid but transport=websocket as a plain GET")
    def _(c):
        sid = handshake(c)
        http(c, req("GET", P + f"?EIO=4&transport=websocket&sid={sid}"))

    @case("message_roundtrip", "POST two packets in one payload, GET returns both echoes joined by \\x1e")
    def _(c):
        sid = handshake(c)
        post(c, sid, b"4hello\x1ebAQID")
        get(c, sid)

    @case("octet_stream_post", "POST with Content-Type application/octet-stream (v4 forbids it)")
    def _(c):
        sid = handshake(c)
        post(c, sid, b"4hello", headers=[("Content-Type", "application/octet-stream")])
        get(c, sid, timeout=1.0)

    @case("post_at_max_http_buffer_size", "POST of exactly maxHttpBufferSize (1e6) bytes")
    def _(c):
        sid = handshake(c)
        post(c, sid, b"4" + b"x" * 999_999)
        resp = get(c, sid)
        if "body" in resp and len(resp["body"]) > 200:
            resp["body"] = f"<{len(resp['body'])} chars: {resp['body'][:10]}...>"

    @case("post_over_max_http_buffer_size", "POST of 1e6+1 bytes, then GET and POST on the same sid")
    def _(c):
        sid = handshake(c)
        post(c, sid, b"4" + b"x" * 1_000_000)
        get(c, sid, timeout=1.0)
        post(c, sid, b"4after")
        get(c, sid, timeout=1.0)

    @case("concurrent_gets", "two GETs on one sid: the second while the first is pending")
    def _(c):
        sid = handshake(c)
        first = Http(c.port)
        first.send(req("GET", q(sid)))
        time.sleep(0.05)
        c.note("first GET sent and pending (answer recorded below)")
        get(c, sid)
        step = {"request": "(answer of the first, pending GET)", "response": first.read_response(1.0)}
        c.steps.append(step)
        first.close()
        get(c, sid, timeout=1.0)

    @case("concurrent_posts", "a POST while another POST on the sid is still sending its body")
    def _(c):
        sid = handshake(c)
        first = Http(c.port)
        raw = req(
            "POST",
            q(sid),
            [("Content-Type", "text/plain;charset=UTF-8"), ("Content-Length", "10")],
            b"4abc",
            content_length=False,
        )
        first.send(raw)
        time.sleep(0.05)
        c.note("first POST sent with Content-Length 10 but only 4 body bytes")
        post(c, sid, b"4second")
        c.steps.append(
            {
                "request": "(answer of the first POST after its remaining 6 bytes)",
                "send_error": first.send(b"xxxxxx"),
                "response": first.read_response(1.0),
            }
        )
        first.close()
        get(c, sid, timeout=1.0)

    for body in [
        "abc",
        "b!!!",
        "bAQID",
        "4",
        "",
        "4a\x1e",
        "\x1e",
        "4a\x1e\x1e4b",
        "2",
        "3",
        "5",
        "6",
        "7",
        "2probe",
        "4é",
    ]:

        @case(f"post_payload_{body!r}", f"POST body {body!r}, then GET on the same sid (what the session did)")
        def _(c, body=body):
            sid = handshake(c)
            post(c, sid, body.encode())
            get(c, sid, timeout=1.0)

    @case("post_close_packet", "POST '1' (close) while a GET is pending, then GET again")
    def _(c):
        sid = handshake(c)
        pending = Http(c.port)
        pending.send(req("GET", q(sid)))
        time.sleep(0.05)
        post(c, sid, b"1")
        c.steps.append({"request": "(answer of the GET that was pending)", "response": pending.read_response(1.0)})
        pending.close()
        get(c, sid, timeout=1.0)

    @case("chunked_post", "POST with Transfer-Encoding: chunked")
    def _(c):
        sid = handshake(c)
        body = b"3\r\n4he\r\n4\r\nllo!\r\n0\r\n\r\n"
        http(
            c,
            req(
                "POST",
                q(sid),
                [("Content-Type", "text/plain;charset=UTF-8"), ("Transfer-Encoding", "chunked")],
                body,
                content_length=False,
            ),
        )
        get(c, sid)

    @case("polling_ping_timeout", "polling session that never answers the ping")
    def _(c):
        sid = handshake(c)
        get(c, sid, timeout=2.0, tcp=False)
        get(c, sid, timeout=2.0, tcp=False)
        get(c, sid, timeout=1.0)

    @case("polling_ping_pong", "polling session answering the ping: stays open")
    def _(c):
        sid = handshake(c)
        get(c, sid, timeout=2.0)
        post(c, sid, b"3")
        get(c, sid, timeout=2.0)

    @case("garbage_request_line", "a request line that is not HTTP")
    def _(c):
        http(c, b"GARBAGE\r\n\r\n")

    @case("header_over_16k", "a request whose header section is over 16 KiB")
    def _(c):
        http(c, req("GET", P + "?EIO=4&transport=polling", [("X-Big", "a" * 17_000)]))

    @case("header_just_under_16k", "a request whose header section is just under 16 KiB")
    def _(c):
        http(c, req("GET", P + "?EIO=4&transport=polling", [("X-Big", "a" * 16_000)]))

    @case("other_paths", "requests outside the engine.io path (engine.io only handles its own path)")
    def _(c):
        http(c, req("GET", "/"), timeout=1.0)
        http(c, req("GET", "/engine.io?EIO=4&transport=polling"), timeout=1.0)
        http(c, req("GET", "/engine.io/anything?EIO=4&transport=polling"), timeout=1.0)
        http(c, req("GET", "/engine.iox/?EIO=4&transport=polling"), timeout=1.0)

    @case("http_1_0_handshake", "handshake over HTTP/1.0")
    def _(c):
        http(c, f"GET {P}?EIO=4&transport=polling HTTP/1.0\r\n\r\n".encode())

    # ---- WebSocket

    @case("ws_handshake_no_sid", "WebSocket-only session: 101 answer, first frame, echo of text and binary")
    def _(c):
        ws, _sid = ws_open(c)
        ws.send_text("4hello")
        ws.send_binary(b"\x01\x02\x03")
        ws.recv(0.5, until=lambda ev: len(ev) >= 2)
        ws.close()

    @case("ws_ping_timing", "WebSocket-only session that never answers the ping")
    def _(c):
        t0 = time.monotonic()
        ws = WS(c, ws_path())
        ws.recv(2.0, auto_pong=False, t0=t0)
        ws.close()

    @case("ws_ping_pong", "WebSocket-only session that answers pings keeps running")
    def _(c):
        ws, _sid = ws_open(c)
        ws.recv(1.2)
        ws.send_text("4still-there")
        ws.recv(0.3, until=first_text)
        ws.close()

    @case("ws_probe_upgrade", "polling session upgraded: 2probe -> 3probe, pending GET gets noop, then 5")
    def _(c):
        sid = handshake(c)
        pending = Http(c.port)
        pending.send(req("GET", q(sid)))
        time.sleep(0.05)
        c.note("a polling GET is pending (answer recorded below)")
        ws = WS(c, ws_path(sid=sid))
        ws.send_text("2probe")
        ws.recv(0.5, until=first_text)
        c.steps.append({"request": "(answer of the pending GET)", "response": pending.read_response(1.0)})
        pending.close()
        ws.send_text("5")
        ws.send_text("4via-ws")
        ws.recv(0.5, until=first_text)
        get(c, sid, timeout=1.0)
        post(c, sid, b"4via-polling")
        ws.recv(0.3)
        ws.close()

    @case("ws_upgrade_message_before_probe", "WebSocket with a polling sid sends '4x' instead of 2probe")
    def _(c):
        sid = handshake(c)
        ws = WS(c, ws_path(sid=sid))
        ws.send_text("4x")
        ws.recv(0.6)
        get(c, sid, timeout=1.0)
        ws.close()

    @case("ws_unknown_sid", "WebSocket upgrade with an unknown sid")
    def _(c):
        WS(c, ws_path(sid="doesnotexist")).close()

    @case("ws_upgrade_twice_same_sid", "a second WebSocket upgrade for an already upgraded sid")
    def _(c):
        sid = handshake(c)
        ws = WS(c, ws_path(sid=sid))
        ws.send_text("2probe")
        ws.recv(0.5, until=first_text)
        ws.send_text("5")
        time.sleep(0.1)
        second = WS(c, ws_path(sid=sid))
        c.note("frames on the second WebSocket:")
        second.recv(0.5)
        c.note("frames on the first (upgraded) WebSocket:")
        ws.send_text("4first")
        ws.recv(0.5)
        ws.close()
        second.close()

    @case("ws_upgrade_eio3", "WebSocket upgrade with EIO=3")
    def _(c):
        WS(c, P + "?EIO=3&transport=websocket").recv_raw()

    @case("ws_upgrade_unknown_transport", "WebSocket upgrade with transport=foo")
    def _(c):
        WS(c, P + "?EIO=4&transport=foo").close()

    @case("ws_upgrade_missing_key", "Upgrade request without Sec-WebSocket-Key")
    def _(c):
        WS(
            c, ws_path(), headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]
        ).close()

    @case("ws_upgrade_bad_version", "Upgrade request with Sec-WebSocket-Version: 8")
    def _(c):
        WS(
            c,
            ws_path(),
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "8"),
            ],
        ).recv(0.8, auto_pong=False)

    @case("ws_upgrade_on_polling_transport", "Upgrade headers on a transport=polling URL")
    def _(c):
        WS(c, P + "?EIO=4&transport=polling").recv(0.8, auto_pong=False)

    def ws_bad_frame(name, description, send):
        @case(name, description)
        def _(c):
            ws, _sid = ws_open(c)
            t0 = time.monotonic()
            send(ws)
            ws.recv(0.8, t0=t0, record_pings=True)
            ws.close()

    ws_bad_frame("ws_unmasked_frame", "client frame without mask", lambda ws: ws.send_text("4hi", mask=False))
    ws_bad_frame(
        "ws_invalid_utf8",
        "text frame with invalid UTF-8",
        lambda ws: ws.send_frame(1, b"4\xff\xfe", label="34fffe (hex)"),
    )
    ws_bad_frame("ws_frame_over_max", "text frame of 1e6+1 bytes", lambda ws: ws.send_text("4" + "x" * 1_000_000))
    ws_bad_frame("ws_unknown_opcode", "frame with opcode 3", lambda ws: ws.send_frame(3, b"4hi", label="4hi"))
    ws_bad_frame(
        "ws_rsv_bit",
        "text frame with RSV1 set (no extension negotiated)",
        lambda ws: ws.send_frame(1, b"4hi", rsv=4, label="4hi"),
    )
    ws_bad_frame(
        "ws_close_frame",
        "client close frame 1000",
        lambda ws: ws.send_frame(8, struct.pack("!H", 1000) + b"bye", label="1000 bye"),
    )
    ws_bad_frame(
        "ws_ping_frame", "client WebSocket ping frame (opcode 9)", lambda ws: ws.send_frame(9, b"abc", label="abc")
    )
    ws_bad_frame("ws_close_packet", "Engine.IO close packet '1' over WebSocket", lambda ws: ws.send_text("1"))
    ws_bad_frame(
        "ws_ping_packet_from_client",
        "Engine.IO ping '2' sent by the client (wrong direction)",
        lambda ws: ws.send_text("2"),
    )
    ws_bad_frame("ws_garbage_packet", "Engine.IO packet 'abc' over WebSocket", lambda ws: ws.send_text("abc"))
    ws_bad_frame("ws_empty_text", "empty text frame", lambda ws: ws.send_text(""))
    ws_bad_frame(
        "ws_fragmented_text",
        "text message in two fragments (FIN=0 then continuation)",
        lambda ws: (ws.send_frame(1, b"4hel", fin=False, label="4hel"), ws.send_frame(0, b"lo", label="lo")),
    )
    ws_bad_frame(
        "ws_binary_base64_text",
        "text frame 'bAQID' (base64 binary packet over WebSocket)",
        lambda ws: ws.send_text("bAQID"),
    )
    return cases


# ---------------------------------------------------------------- Socket.IO cases


def sio_cases(server):
    cases = []
    P = "/socket.io/"

    def run(name, description, fn):
        c = Case(server, name, description)
        try:
            fn(c)
        except Exception as e:
            c.step(capture_error=f"{e.__class__.__name__}: {e}")
        cases.append(c.result())
        print(f"  {name}", file=sys.stderr)

    def texts(n):
        return lambda ev: sum(1 for e in ev if "text" in e) >= n

    def connected(c, connect="40"):
        """WebSocket session joined to a namespace: CONNECT answer and the server's 'auth' event read."""
        ws, _ = ws_open(c, P)
        ws.send_text(connect)
        ws.recv(1.0, until=texts(2))
        return ws

    def then_observe(c, ws, frames, duration=0.8):
        t0 = time.monotonic()
        for f in frames:
            if isinstance(f, bytes):
                ws.send_binary(f)
            else:
                ws.send_text(f)
        ws.recv(duration, t0=t0)
        ws.close()

    run("handshake_polling", "Engine.IO handshake on /socket.io/", lambda c: handshake(c, P))

    def polling_connect(c):
        sid = handshake(c, P)
        post(c, sid, b"40", path=P)
        get(c, sid, path=P)
        post(c, sid, b'42["message","hi",1]', path=P)
        get(c, sid, path=P)

    run("polling_connect_and_event", "CONNECT and an EVENT over polling", polling_connect)

    run("connect_main_no_auth", "CONNECT '40' to /", lambda c: then_observe(c, connected(c), [], 0.4))
    run(
        "connect_main_with_auth",
        'CONNECT \'40{"token":"123"}\' to /',
        lambda c: then_observe(c, connected(c, '40{"token":"123"}'), [], 0.4),
    )
    run("connect_custom_nsp", "CONNECT '40/custom,' ", lambda c: then_observe(c, connected(c, "40/custom,"), [], 0.4))
    run(
        "connect_custom_nsp_with_auth",
        'CONNECT \'40/custom,{"token":"abc"}\'',
        lambda c: then_observe(c, connected(c, '40/custom,{"token":"abc"}'), [], 0.4),
    )

    def unknown_nsp(c):
        ws, _ = ws_open(c, P)
        then_observe(c, ws, ["40/random,"], 0.4)

    run("connect_unknown_nsp", "CONNECT to an unknown namespace", unknown_nsp)

    def unknown_nsp_then_wait(c):
        ws, _ = ws_open(c, P)
        then_observe(c, ws, ["40/random,"], 1.5)

    run(
        "connect_unknown_nsp_then_wait",
        "CONNECT unknown namespace, then nothing (does connectTimeout fire?)",
        unknown_nsp_then_wait,
    )

    def unknown_nsp_then_main(c):
        ws, _ = ws_open(c, P)
        ws.send_text("40/random,")
        ws.recv(0.3, until=texts(1))
        then_observe(c, ws, ["40"], 0.4)

    run(
        "connect_unknown_nsp_then_main",
        "CONNECT unknown namespace, then CONNECT / on the same connection",
        unknown_nsp_then_main,
    )

    def connect_bad_auth(c):
        ws, _ = ws_open(c, P)
        then_observe(c, ws, ['40"notanobject"'], 0.5)

    run("connect_auth_not_object", "CONNECT with a string payload (auth must be an object)", connect_bad_auth)

    def connect_timeout(c):
        t0 = time.monotonic()
        ws = WS(c, ws_path(P))
        ws.recv(2.0, t0=t0)
        ws.close()

    run("connect_timeout", "no CONNECT at all (connectTimeout 1000; pings answered)", connect_timeout)

    def before_connect(pkts):
        def fn(c):
            ws, _ = ws_open(c, P)
            then_observe(c, ws, pkts, 0.5)

        return fn

    run("event_before_connect", "EVENT before any CONNECT", before_connect(['42["message","x"]']))
    run("garbage_before_connect", "malformed packet '4abc' before CONNECT", before_connect(["4abc"]))

    after = [
        ("event_echo", "EVENT 'message' is echoed as 'message-back'", ['42["message","x",{"a":[1,2]}]']),
        ("event_with_ack", "EVENT with ack id 1 on 'message-with-ack'", ['421["message-with-ack","x",2]']),
        ("ack_id_2pow53_minus_1", "ack id 2^53-1", ['429007199254740991["message-with-ack","x"]']),
        ("ack_id_2pow53", "ack id 2^53", ['429007199254740992["message-with-ack","x"]']),
        ("ack_id_huge", "ack id with 25 digits", ['421234567890123456789012345["message-with-ack","x"]']),
        ("bad_json", "EVENT '2[' (invalid JSON)", ["42["]),
        ("event_not_array", "EVENT '2{}' (payload not an array)", ["42{}"]),
        ("event_empty_array", "EVENT '2[]'", ["42[]"]),
        ("event_number_name", "EVENT '2[1,\"a\"]' (numeric event name)", ['42[1,"a"]']),
        ("event_reserved_name", "EVENT named 'connect' (reserved)", ['42["connect"]']),
        ("event_no_payload", "EVENT '2' with no payload at all", ["42"]),
        ("unknown_packet_type", "packet type 9", ["49"]),
        ("unknown_nsp_event", "EVENT '2/x,[]' for a namespace not joined", ['42/x,["a"]']),
        ("nsp_without_comma", "EVENT '2/custom[\"a\"]' (namespace not ended by a comma)", ['42/custom["a"]']),
        ("connect_twice", "CONNECT '/' again while connected", ["40"]),
        ("connect_error_from_client", "CONNECT_ERROR packet '44' from the client", ['44{"message":"x"}']),
        ("ack_unknown_id", "ACK '3' for an id the server never sent", ['4399["x"]']),
        ("ack_not_array", "ACK with an object payload", ["431{}"]),
        ("disconnect_packet", "DISCONNECT '1' from the client", ["41"]),
        ("disconnect_with_payload", "DISCONNECT with a payload (must have none)", ["41{}"]),
        ("empty_message", "Engine.IO message '4' with empty data", ["4"]),
        (
            "binary_event",
            "BINARY_EVENT with one attachment, then the attachment",
            ['451-["message",{"_placeholder":true,"num":0}]', b"\x01\x02\x03"],
        ),
        (
            "binary_event_then_text",
            "BINARY_EVENT '51-[\"a\"]' then a text message instead of the attachment",
            ['451-["a"]', '42["message","x"]'],
        ),
        ("binary_without_header", "a binary frame with no BINARY_EVENT before it", [b"\x01\x02"]),
        ("binary_attachments_zero", "BINARY_EVENT with 0 attachments", ['450-["a"]']),
        ("binary_attachments_no_dash", "BINARY_EVENT without the '-' after the count", ['451["a"]']),
        ("eio_close_packet", "Engine.IO close packet '1'", ["1"]),
    ]
    for name, description, frames in after:
        run(name, description, lambda c, frames=frames: then_observe(c, connected(c), frames))

    def custom_event(c):
        ws = connected(c, "40/custom,")
        then_observe(c, ws, ['42/custom,["message","x"]'], 0.4)

    run("custom_nsp_event_no_handler", "EVENT on /custom (which has no 'message' handler)", custom_event)

    def both_nsps_disconnect_one(c):
        ws = connected(c)
        ws.send_text("40/custom,")
        ws.recv(0.5, until=texts(2))
        then_observe(c, ws, ["41/custom,", '42["message","still"]'], 0.4)

    run("disconnect_one_of_two_nsps", "joined / and /custom, DISCONNECT /custom only", both_nsps_disconnect_one)

    def no_pong(c):
        ws = connected(c)
        t0 = time.monotonic()
        ws.recv(1.5, auto_pong=False, t0=t0)
        ws.close()

    run("ping_timeout", "connected, never answering pings", no_pong)
    return cases


# ---------------------------------------------------------------- main


def versions():
    out = {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()}
    for pkg in ("engine.io", "socket.io", "socket.io-parser", "ws"):
        with open(os.path.join(HERE, "node_modules", pkg, "package.json")) as f:
            out[pkg] = json.load(f)["version"]
    return out


def capture(script, make_cases, outfile, config):
    print(f"{script}:", file=sys.stderr)
    server = Server(script)
    try:
        cases = make_cases(server)
    finally:
        server.stop()
    doc = {
        "generated_by": "tests/node/capture_reference.py (do not edit by hand; re-run it)",
        "versions": versions(),
        "server_config": config,
        "notes": [
            "sids are replaced by placeholders; at_ms values are rounded to 50 ms and only meant qualitatively",
            "ws_recv lists frames the server sent; Engine.IO pings ('2') are answered automatically and not "
            "listed except in the ping-timing cases; {'tcp':'closed'} means the server closed the TCP connection",
            "response.tcp_after: whether the server kept the HTTP connection open after answering",
            "server_log: what the Node server reported (close reasons etc.), at_ms since the case started",
        ],
        "cases": cases,
    }
    with open(outfile, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.relpath(outfile)}", file=sys.stderr)


def main():
    only = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--only" else None
    base = {"pingInterval": 300, "pingTimeout": 200, "maxHttpBufferSize": 1_000_000, "cors": {"origin": "*"}}
    if only in (None, "eio"):
        capture(
            "reference_eio_server.mjs",
            eio_cases,
            os.path.join(VECTORS, "eio_reference.json"),
            dict(base, path="/engine.io/", on_message="echo"),
        )
    if only in (None, "sio"):
        capture(
            "reference_sio_server.mjs",
            sio_cases,
            os.path.join(VECTORS, "sio_reference.json"),
            dict(
                base,
                path="/socket.io/",
                connectTimeout=1000,
                handlers="spec test-suite: emit('auth', auth) on connect; 'message' -> 'message-back'; "
                "'message-with-ack' acks its args; /custom emits 'auth' only",
            ),
        )


if __name__ == "__main__":
    main()
