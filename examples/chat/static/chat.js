// The anysio chat page: the same commands and wire contract as the terminal participant (see README.md).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const socket = io({ reconnectionDelayMax: 3000 });
  const state = { name: localStorage.getItem("chat-name") || `guest-${Math.floor(Math.random() * 9000 + 1000)}`, room: null };
  let warnedOffline = false;
  $("name").value = state.name;

  function time(ts) {
    const t = document.createElement("time");
    const d = ts ? new Date(ts) : new Date();
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return t;
  }

  function line(kind, text, extra) {
    const li = document.createElement("li");
    li.className = kind;
    li.append(time(extra && extra.ts));
    if (extra && extra.name !== undefined) {
      const who = document.createElement("span");
      who.className = "name";
      who.textContent = `[${extra.room}] ${extra.name}`;
      li.append(who, `: ${text}`);
    } else {
      li.append(text);
    }
    const log = $("log");
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  const notice = (text) => line("notice", `* ${text}`);
  const problem = (text) => line("error", `! ${text}`);

  function showRoom() {
    $("current-room").textContent = state.room ? `in ${state.room} as ${state.name}` : "";
    $("leave").disabled = !state.room;
  }

  // An ack is the answer, or {error}; no answer in 5 s is an error too.
  async function call(event, data) {
    if (!socket.connected) throw new Error("not connected to the server");
    let reply;
    try {
      reply = await socket.timeout(5000).emitWithAck(event, data);
    } catch {
      throw new Error(`the server did not answer ${event} in 5 s`);
    }
    if (reply && typeof reply === "object" && !Array.isArray(reply) && "error" in reply) throw new Error(reply.error);
    return reply;
  }

  async function join(room) {
    const members = await call("join", { room, name: state.name });
    state.room = room.trim();
    showRoom();
    return members;
  }

  const commands = {
    async join(arg) {
      if (!arg) throw new Error("usage: /join ROOM");
      const members = await join(arg);
      notice(`you joined ${state.room}; members: ${members.join(", ")}`);
    },
    async leave() {
      if (!state.room) return notice("you are in no room");
      await call("leave", {});
      notice(`you left ${state.room}`);
      state.room = null;
      showRoom();
    },
    async nick(arg) {
      if (!arg) throw new Error("usage: /nick NAME");
      if (state.room) await call("join", { room: state.room, name: arg });
      state.name = arg.trim();
      $("name").value = state.name;
      localStorage.setItem("chat-name", state.name);
      showRoom();
      notice(`you are now ${state.name}`);
    },
    async who() {
      if (!state.room) throw new Error("join a room first: /join ROOM");
      notice(`members of ${state.room}: ${(await join(state.room)).join(", ")}`);
    },
  };

  async function say(text) {
    if (!state.room) throw new Error("join a room first");
    const { ts } = await call("chat message", { text });
    line("chat mine", text, { room: state.room, name: state.name, ts });
  }

  async function run(input) {
    try {
      if (!input.startsWith("/")) return input.trim() && (await say(input));
      const [verb, ...rest] = input.slice(1).split(" ");
      const command = commands[verb];
      if (!command) throw new Error("commands: /join ROOM, /leave, /nick NAME, /who");
      await command(rest.join(" ").trim());
    } catch (e) {
      problem(e.message);
    }
  }

  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("name").value.trim();
    if (name && name !== state.name) await run(`/nick ${name}`);
    await run(`/join ${$("room").value}`);
    $("message").focus();
  });
  $("leave").addEventListener("click", () => run("/leave"));
  $("message-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("message").value;
    $("message").value = "";
    await run(input);
  });

  socket.on("chat message", (m) => line("chat", m.text, m));
  socket.on("joined", (m) => notice(`${m.name} joined ${m.room}`));
  socket.on("left", (m) => notice(`${m.name} left ${m.room}`));

  socket.on("connect", async () => {
    $("status").textContent = "connected";
    $("status").className = "status online";
    if (warnedOffline) notice("reconnected");
    warnedOffline = false;
    if (state.room) {
      try {
        await join(state.room);
        notice(`you joined ${state.room} again`);
      } catch (e) {
        problem(e.message);
      }
    }
  });
  socket.on("disconnect", () => {
    $("status").textContent = "disconnected";
    $("status").className = "status";
    problem("lost the connection to the server; reconnecting...");
    warnedOffline = true;
  });
  socket.on("connect_error", () => {
    $("status").textContent = "server unreachable; retrying";
    $("status").className = "status";
    if (!warnedOffline) problem("cannot reach the chat server; retrying...");
    warnedOffline = true;
  });
  showRoom();
})();
