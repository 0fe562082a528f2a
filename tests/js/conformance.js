// Conformance of phx's bundled test server with the official JavaScript client: the `phoenix`
// npm package (the version the golden traces were recorded with) runs a scripted session
// against the server and checks every reply, push, broadcast and lifecycle event it sees.
//
//   node conformance.js ws://127.0.0.1:PORT/socket
//
// Exits 0 after printing PASS, or 1 with the failing step and the mismatch on stderr.
"use strict"

const {
  Inbox, Presence, check, equal, expectReply, hex, main, makeSocket, reply, step, waitFor, watchChannel,
} = require("./lib")

const bytes = (...values) => new Uint8Array(values).buffer
const isReply = (topic, ref) => m => m.topic === topic && m.event === "phx_reply" && m.ref === ref

// Options of every socket: quick rejoins, and a heartbeat several times per scenario.
const FAST = {
  heartbeatIntervalMs: 300,
  rejoinAfterMs: () => 20,
  reconnectAfterMs: () => 20,
}

// A socket whose every handshake is refused: the official client sees an error (the HTTP
// status is in the `ws` error message) and a close, then keeps retrying until disconnected.
async function refused(url, opts, what){
  const {socket, seen} = makeSocket(url, {...opts, reconnectAfterMs: () => 60000})
  socket.connect()
  const error = await seen.errors.next(`the refusal of ${what}`)
  check(/\b403\b/.test(error), `${what}: expected an HTTP 403 refusal, got error ${JSON.stringify(error)}`)
  const code = await seen.closes.next(`the close after the refusal of ${what}`)
  equal(code, 1006, `close code after the refused handshake of ${what}`)
  check(!socket.isConnected(), `${what}: the socket is not connected`)
  seen.opens.assertEmpty(`${what}: opens`)
  socket.disconnect()
}

function disconnect(socket){
  return waitFor("disconnect", resolve => socket.disconnect(resolve))
}

async function scenario(url){
  await step("a connect with a wrong token param is refused with 403", () =>
    refused(url, {...FAST, params: {token: "wrong"}}, "token=wrong"))

  await step("a connect without credentials is refused with 403", () =>
    refused(url, FAST, "no params"))

  const {socket, seen} = makeSocket(url, {...FAST, params: {token: "secret"}})
  await step("connect with params", async () => {
    socket.connect()
    await seen.opens.next("open")
    check(socket.isConnected(), "the socket is connected")
    check(socket.endPointURL().endsWith("/socket/websocket?token=secret&vsn=2.0.0"),
      `endpoint URL ${socket.endPointURL()}`)
  })

  const lobby = socket.channel("room:lobby", {user: "alice", tags: ["a", "b"]})
  const lobbySeen = watchChannel(lobby, ["shout", "push_me_evt"])
  await step("join with params", async () => {
    const since = seen.messages.mark()
    const join = lobby.join()
    await expectReply(join, "the join of room:lobby", "ok",
      {joined: "room:lobby", params: {user: "alice", tags: ["a", "b"]}})
    const raw = await seen.messages.find("join reply", isReply("room:lobby", lobby.joinRef()), since)
    equal(raw.join_ref, lobby.joinRef(), "join reply join_ref (the join's ref)")
    check(lobby.state === "joined", `channel state ${lobby.state}`)
  })

  await step("push with an ok reply", () =>
    expectReply(lobby.push("ping", {n: 1, s: "é"}), "ping", "ok", {n: 1, s: "é"}))

  await step("push with an error reply", () =>
    expectReply(lobby.push("error_reply", {}), "error_reply", "error", {reason: "nope"}))

  await step("push with a custom-status reply", () =>
    expectReply(lobby.push("custom_status", {x: 2}), "custom_status", "custom", {x: 2}))

  await step("a push without a reply times out", async () => {
    const got = await reply(lobby.push("noreply", {}, 150), "noreply")
    equal(got.status, "timeout", "status of a push the server never answers")
  })

  await step("a server push to this client", async () => {
    await expectReply(lobby.push("push_me", {event: "push_me_evt", payload: {k: 1}}), "push_me", "ok", {})
    const got = await lobbySeen.events.next("push_me_evt")
    equal(got.payload, {k: 1}, "pushed payload")
    equal(got.joinRef, lobby.joinRef(), "a server push carries the join_ref")
  })

  const second = makeSocket(url, {...FAST, params: {token: "secret"}})
  await step("a broadcast reaches every joiner", async () => {
    second.socket.connect()
    await second.seen.opens.next("second socket open")
    const lobby2 = second.socket.channel("room:lobby", {user: "bob"})
    const lobby2Seen = watchChannel(lobby2, ["shout"])
    await expectReply(lobby2.join(), "bob's join of room:lobby", "ok",
      {joined: "room:lobby", params: {user: "bob"}})
    const since = seen.messages.mark()
    lobby2.push("shout", {body: "hi all"})
    for(const [who, inbox] of [["alice", lobbySeen.events], ["bob", lobby2Seen.events]]){
      const got = await inbox.next(`the shout at ${who}`)
      equal([got.event, got.payload], ["shout", {body: "hi all"}], `broadcast seen by ${who}`)
    }
    const raw = await seen.messages.find("raw shout", m => m.event === "shout", since)
    equal([raw.join_ref, raw.ref], [null, null], "a fastlane broadcast has no join_ref and no ref")
    await expectReply(lobby2.leave(), "bob's leave", "ok", {})
  })

  await step("heartbeat and its reply", async () => {
    const since = seen.messages.mark()
    const hb = await seen.messages.find("a heartbeat reply", m => m.topic === "phoenix", since)
    equal([hb.join_ref, hb.event, hb.payload], [null, "phx_reply", {status: "ok", response: {}}],
      "heartbeat reply")
    const rtt = await waitFor("a ping's round trip", resolve => check(socket.ping(resolve), "ping sent"))
    check(typeof rtt === "number" && rtt >= 0, `ping rtt ${rtt}`)
  })

  await step("presence: state, then diffs for a second client", async () => {
    const room = socket.channel("presence:lobby", {user: "alice"})
    const presence = new Presence(room)
    const syncs = [], joins = [], leaves = []
    const synced = []
    presence.onSync(() => { syncs.push(presence.list((key) => key).sort()); synced.forEach(f => f()) })
    presence.onJoin((key, current, joined) => joins.push([key, current === undefined, joined.metas.length]))
    presence.onLeave((key, current, left) => leaves.push([key, current.metas.length, left.metas.length]))
    const syncedWith = (what, keys) => waitFor(what, resolve => {
      const test = () => { if(syncs.some(s => JSON.stringify(s) === JSON.stringify(keys))){ resolve() } }
      synced.push(test)
      test()
    })
    const since = seen.messages.mark()
    await expectReply(room.join(), "the presence join", "ok", {joined: "presence:lobby"})
    await syncedWith("alice alone in the presence list", ["alice"])
    const state = await seen.messages.find("presence_state", m => m.event === "presence_state", since)
    equal([state.join_ref, state.ref], [room.joinRef(), null], "presence_state is a push (join_ref, no ref)")
    check(Object.keys(state.payload).length === 1 && state.payload.alice.metas.length === 1,
      `presence_state payload ${JSON.stringify(state.payload)}`)
    const meta = state.payload.alice.metas[0]
    check(typeof meta.phx_ref === "string" && typeof meta.online_at === "number", `meta ${JSON.stringify(meta)}`)

    const bobRoom = second.socket.channel("presence:lobby", {user: "bob"})
    const diffsFrom = seen.messages.mark()
    await expectReply(bobRoom.join(), "bob's presence join", "ok", {joined: "presence:lobby"})
    await syncedWith("alice and bob in the presence list", ["alice", "bob"])
    check(joins.some(([key, isNew, n]) => key === "bob" && isNew && n === 1), `joins ${JSON.stringify(joins)}`)
    await expectReply(bobRoom.leave(), "bob's presence leave", "ok", {})
    await waitFor("bob's leave", resolve => {
      const test = () => { if(leaves.some(([key, rest]) => key === "bob" && rest === 0)){ resolve() } }
      synced.push(test)
      test()
    })
    equal(presence.list(key => key), ["alice"], "presence list after bob left")
    const diffs = seen.messages.filter(m => m.event === "presence_diff", diffsFrom)
    check(diffs.some(d => d.payload.joins.bob && Object.keys(d.payload.leaves).length === 0),
      `a presence_diff joining bob among ${JSON.stringify(diffs)}`)
    check(diffs.some(d => d.payload.leaves.bob && Object.keys(d.payload.joins).length === 0),
      `a presence_diff with bob's leave among ${JSON.stringify(diffs)}`)
    check(diffs.every(d => d.join_ref === null && d.ref === null), "presence diffs are broadcasts")
    await expectReply(room.leave(), "alice's presence leave", "ok", {})
  })

  await step("binary push, binary reply, binary server push and broadcast", async () => {
    const bin = socket.channel("room:bin")
    const binSeen = watchChannel(bin, ["bin_push", "bin_shout"])
    await expectReply(bin.join(), "the join of room:bin", "ok", {joined: "room:bin", params: {}})
    const echoed = await expectReply(bin.push("bin", bytes(1, 2, 3, 0, 255)), "binary bin", "ok")
    check(echoed instanceof ArrayBuffer, `a binary reply decodes to an ArrayBuffer, got ${typeof echoed}`)
    equal(hex(echoed), "01020300ff", "binary reply bytes")
    const fromJson = await expectReply(bin.push("bin", {json: "in"}), "JSON bin", "ok")
    equal(Buffer.from(fromJson).toString(), '{"json":"in"}', "binary reply to a JSON push")
    await expectReply(bin.push("bin_push", bytes(0xca, 0xfe)), "bin_push", "ok", {})
    const pushed = await binSeen.events.next("bin_push")
    equal([pushed.event, hex(pushed.payload), pushed.joinRef], ["bin_push", "cafe", bin.joinRef()], "binary server push")
    await expectReply(bin.push("bin_shout", bytes(0xde, 0xad)), "bin_shout", "ok", {})
    const shouted = await binSeen.events.next("bin_shout")
    equal([shouted.event, hex(shouted.payload)], ["bin_shout", "dead"], "binary broadcast")
    await expectReply(bin.leave(), "leave of room:bin", "ok", {})
  })

  await step("channel crash: phx_error, then the client rejoins", async () => {
    const crashy = socket.channel("room:crashy", {n: 1})
    const crashySeen = watchChannel(crashy)
    const joined = new Inbox("room:crashy join replies")
    const join = crashy.join()
    join.receive("ok", response => joined.put({response, joinRef: crashy.joinRef()}))
    await joined.next("the join of room:crashy")
    const firstJoinRef = crashy.joinRef()
    const since = seen.messages.mark()
    crashy.push("crash", {})
    const reason = await crashySeen.errors.next("phx_error")
    equal(reason, {reason: "channel_crash"}, "phx_error payload")
    const raw = await seen.messages.find("raw phx_error", m => m.event === "phx_error", since)
    equal([raw.join_ref, raw.ref, raw.topic], [firstJoinRef, firstJoinRef, "room:crashy"], "phx_error refs")
    const rejoined = await joined.next("the rejoin's ok reply")
    check(rejoined.joinRef !== firstJoinRef, "the rejoin uses a new join_ref")
    equal(rejoined.response, {joined: "room:crashy", params: {n: 1}}, "rejoin reply")
    const crashReply = seen.messages.filter(m => m.event === "phx_reply" && m.topic === "room:crashy" && m.join_ref === firstJoinRef && m.ref !== firstJoinRef, since)
    equal(crashReply, [], "the crashing push gets no reply")
    await expectReply(crashy.push("ping", {after: "crash"}), "ping after the rejoin", "ok", {after: "crash"})
    await expectReply(crashy.leave(), "leave of room:crashy", "ok", {})
  })

  await step("server stop: phx_close closes the channel for good", async () => {
    const stoppy = socket.channel("room:stoppy")
    const stoppySeen = watchChannel(stoppy)
    await expectReply(stoppy.join(), "the join of room:stoppy", "ok")
    const joinRef = stoppy.joinRef()
    const since = seen.messages.mark()
    stoppy.push("stop", {})
    const payload = await stoppySeen.closes.next("phx_close")
    equal(payload, {}, "phx_close payload")
    const raw = await seen.messages.find("raw phx_close", m => m.event === "phx_close", since)
    equal([raw.join_ref, raw.ref], [joinRef, joinRef], "phx_close refs")
    check(stoppy.state === "closed", `state after phx_close: ${stoppy.state}`)
    check(!socket.channels.includes(stoppy), "a closed channel is removed from the socket")
    stoppySeen.errors.assertEmpty("room:stoppy errors")
  })

  await step("leave: ok reply, then phx_close", async () => {
    const joinRef = lobby.joinRef()
    const since = seen.messages.mark()
    const leave = lobby.leave()
    await expectReply(leave, "the leave of room:lobby", "ok", {})
    const closed = await lobbySeen.closes.next("the local close after leave")
    equal(closed, "leave", "leave closes the channel locally")
    const raw = await seen.messages.find("phx_close after the leave", m => m.event === "phx_close" && m.topic === "room:lobby", since)
    equal([raw.join_ref, raw.ref], [joinRef, joinRef], "phx_close after leave refs")
    const leaveReply = await seen.messages.find("leave reply", isReply("room:lobby", leave.ref), since)
    check(seen.messages.items.indexOf(leaveReply) < seen.messages.items.indexOf(raw), "the leave reply comes before phx_close")
  })

  await step("auth token in Sec-WebSocket-Protocol", async () => {
    const authed = makeSocket(url, {...FAST, authToken: "secret"})
    authed.socket.connect()
    await authed.seen.opens.next("open with an auth token")
    equal(authed.socket.conn.protocol, "phoenix", "selected subprotocol")
    const room = authed.socket.channel("room:token")
    await expectReply(room.join(), "a join over the token-authenticated socket", "ok", {joined: "room:token", params: {}})
    await expectReply(room.push("ping", {t: 1}), "ping", "ok", {t: 1})
    await disconnect(authed.socket)
  })

  await step("a wrong auth token is refused with 403", () =>
    refused(url, {...FAST, authToken: "wrong"}, "authToken=wrong"))

  await step("disconnect", async () => {
    await disconnect(second.socket)
    await disconnect(socket)
    check(!socket.isConnected(), "disconnected")
  })
}

main(scenario)
