// The official client's half of the differential test (tests/tests/differential_phoenix_js.rs):
// the same scenario as the Rust half, step for step, against a test server that records
// every frame the client sends. The Rust test compares the two recordings; this script only
// drives the session and checks that each step had the outcome it needs before the next.
//
//   node differential.js ws://127.0.0.1:PORT/socket
//
// Server actions (restart, dropped connections, refused handshakes) are asked of the Rust
// driver over the control channel (see lib.js).
"use strict"

const {
  Inbox, Log, check, control, equal, expectReply, hex, main, makeSocket, reply, step, waitFor,
} = require("./lib")

// Keep in sync with the Rust half: the same intervals on both clients.
const HEARTBEAT_MS = 300
const OPTS = {
  params: {token: "secret"},
  heartbeatIntervalMs: HEARTBEAT_MS,
  rejoinAfterMs: () => 20,
  reconnectAfterMs: () => 20,
  timeout: 10000,
}

const bytes = (...values) => new Uint8Array(values).buffer
const isHeartbeatReply = m => m.topic === "phoenix" && m.event === "phx_reply"

async function scenario(url){
  const {socket, seen} = makeSocket(url, OPTS)
  // One heartbeat reply on the current connection, at or after `since`.
  const heartbeat = since => seen.messages.find("a heartbeat reply", isHeartbeatReply, since)

  await step("connect", async () => {
    socket.connect()
    await seen.opens.next("open")
  })

  const room = socket.channel("room:diff", {user: "alice", n: 1})
  const joins = new Inbox("room:diff join replies")
  const errors = new Log("room:diff errors")
  room.onError(reason => errors.put(reason))

  await step("join with params", async () => {
    room.join().receive("ok", response => joins.put(response))
    equal(await joins.next("the join"), {joined: "room:diff", params: {user: "alice", n: 1}}, "join reply")
  })

  await step("pushes with ok, error and custom replies", async () => {
    await expectReply(room.push("ping", {n: 1}), "ping", "ok", {n: 1})
    await expectReply(room.push("error_reply", {}), "error_reply", "error", {reason: "nope"})
    await expectReply(room.push("custom_status", {x: 2}), "custom_status", "custom", {x: 2})
  })

  await step("binary push and binary replies", async () => {
    const echoed = await expectReply(room.push("bin", bytes(1, 2, 3, 0, 255)), "binary bin", "ok")
    equal(hex(echoed), "01020300ff", "binary reply")
    const fromJson = await expectReply(room.push("bin", {json: "in"}), "JSON bin", "ok")
    equal(Buffer.from(fromJson).toString(), '{"json":"in"}', "binary reply to a JSON push")
  })

  await step("a heartbeat on the first connection", () => heartbeat(0))

  await step("channel crash, a push while the channel rejoins, then the rejoin", async () => {
    const since = errors.mark()
    room.push("crash", {})
    equal(await errors.find("phx_error", () => true, since), {reason: "channel_crash"}, "phx_error payload")
    // Made before the rejoin (20 ms later): it waits for the new join.
    const during = room.push("ping", {during: "rejoin"})
    await joins.next("the rejoin after the crash")
    await expectReply(during, "the push made while rejoining", "ok", {during: "rejoin"})
    await expectReply(room.push("ping", {after: "crash"}), "ping after the crash", "ok", {after: "crash"})
  })

  await step("server stop (phx_close), then a new join of the topic", async () => {
    const stopped = socket.channel("room:stop")
    const closes = new Inbox("room:stop closes")
    stopped.onClose(payload => closes.put(payload))
    await expectReply(stopped.join(), "the join of room:stop", "ok")
    stopped.push("stop", {})
    equal(await closes.next("phx_close"), {}, "phx_close payload")
    const again = socket.channel("room:stop")
    await expectReply(again.join(), "the new join of room:stop", "ok")
    await expectReply(again.push("ping", {again: true}), "ping on the new channel", "ok", {again: true})
    await expectReply(again.leave(), "the leave of room:stop", "ok", {})
  })

  const two = socket.channel("room:two", {k: 2})
  await step("join a second channel (both rejoin after each reconnect, in creation order)", () =>
    expectReply(two.join(), "the join of room:two", "ok", {joined: "room:two", params: {k: 2}}))

  await step("server restart, then the reconnect and rejoin", async () => {
    await control("restart")
    await seen.closes.next("the close of the dropped connection")
    await joins.next("the rejoin after the restart")
    await expectReply(room.push("ping", {after: "restart"}), "ping after the restart", "ok", {after: "restart"})
  })

  await step("dropped connection, a push while reconnecting, then the rejoin", async () => {
    await control("refuse")
    await control("drop")
    await seen.closes.next("the close of the dropped connection")
    check(!socket.isConnected(), "disconnected after the drop")
    // A push that times out while buffered is never sent.
    const expired = await reply(room.push("ping", {expired: 1}, 50), "a push timing out in the buffer")
    equal(expired.status, "timeout", "status of a push that timed out in the buffer")
    const buffered = room.push("ping", {buffered: 1})
    const buffered2 = two.push("ping", {buffered: 2})
    await control("accept")
    await joins.next("the rejoin after the drop")
    // The refused attempts closed too.
    seen.closes.clear()
    await expectReply(buffered, "the push made while reconnecting", "ok", {buffered: 1})
    await expectReply(buffered2, "the push to room:two made while reconnecting", "ok", {buffered: 2})
  })

  await step("server disconnect (close 1001), then the reconnect and rejoin", async () => {
    room.push("disconnect_me", {})
    equal(await seen.closes.next("the server's close"), 1001, "close code of a disconnect broadcast")
    await joins.next("the rejoin after the disconnect")
    await expectReply(room.push("ping", {after: "1001"}), "ping after the disconnect", "ok", {after: "1001"})
  })

  await step("missed heartbeat, then the reconnect and rejoin", async () => {
    const since = errors.mark()
    await control("heartbeats-off")
    await errors.find("the heartbeat timeout", e => e && e.reason === "heartbeat_timeout", since)
    await control("heartbeats-on")
    await joins.next("the rejoin after the heartbeat timeout")
    const hb = seen.messages.mark()
    await expectReply(room.push("ping", {after: "heartbeat"}), "ping after the heartbeat timeout", "ok", {after: "heartbeat"})
    await heartbeat(hb)
  })

  await step("leave both channels", async () => {
    await expectReply(two.leave(), "the leave of room:two", "ok", {})
    await expectReply(room.leave(), "the leave of room:diff", "ok", {})
  })

  await step("join another channel, then disconnect", async () => {
    const last = socket.channel("room:last")
    await expectReply(last.join(), "the join of room:last", "ok")
    await waitFor("disconnect", resolve => socket.disconnect(resolve))
  })

  const other = makeSocket(url, OPTS)
  await step("a refused first join on a new socket", async () => {
    other.socket.connect()
    await other.seen.opens.next("open")
    const forbidden = other.socket.channel("room:forbidden")
    const refusals = new Inbox("room:forbidden refusals")
    forbidden.join().receive("error", response => refusals.put(response))
    equal(await refusals.next("the refusal"), {reason: "unauthorized"}, "refusal")
    // The official client retries a refused join on the rejoin schedule.
    equal(await refusals.next("the retried join's refusal"), {reason: "unauthorized"}, "second refusal")
    const since = other.seen.messages.mark()
    const leave = forbidden.leave()
    await other.seen.messages.find("the server's reply to the leave",
      m => m.event === "phx_reply" && m.ref === leave.ref, since)
  })

  await step("a server close with 1000", async () => {
    const side = other.socket.channel("room:side")
    const sideJoins = new Inbox("room:side join replies")
    side.join().receive("ok", response => sideJoins.put(response))
    await sideJoins.next("the join of room:side")
    await control("close-normal")
    equal(await other.seen.closes.next("the server's close"), 1000, "close code")
    // phoenix.js 1.8.16 reconnects after any close it did not ask for, 1000 included.
    await sideJoins.next("the rejoin after the close with 1000")
    await waitFor("disconnect", resolve => other.socket.disconnect(resolve))
  })
}

main(scenario)
