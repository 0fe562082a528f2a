// Helpers shared by the scenarios that run the official `phoenix` client under node against
// phx's bundled test server. Every wait is event-driven and bounded by a timeout; any
// mismatch throws, and `main` turns that into a message on stderr and exit code 1.
"use strict"

const readline = require("node:readline")
const util = require("node:util")
const phoenix = require("phoenix")
const WebSocket = require("ws")

const {Socket, Presence} = phoenix

// Generous: only a broken run gets near them.
const WAIT_MS = 10000
const SCRIPT_MS = 60000

let currentStep = "start"

class Mismatch extends Error {}

function fail(message){
  throw new Mismatch(message)
}

function show(value){
  if(value instanceof ArrayBuffer){ return `<binary ${hex(value)}>` }
  return util.inspect(value, {depth: 8, breakLength: Infinity})
}

function hex(buffer){
  return Buffer.from(buffer).toString("hex")
}

function check(condition, message){
  if(!condition){ fail(message) }
}

// Structural equality of JSON-like values (objects compared without regard to key order).
function sameValue(a, b){
  if(a instanceof ArrayBuffer || b instanceof ArrayBuffer){
    return a instanceof ArrayBuffer && b instanceof ArrayBuffer && hex(a) === hex(b)
  }
  if(a === null || b === null || typeof a !== "object" || typeof b !== "object"){
    return a === b
  }
  if(Array.isArray(a) !== Array.isArray(b)){ return false }
  const ka = Object.keys(a).sort()
  const kb = Object.keys(b).sort()
  if(ka.length !== kb.length || ka.some((k, i) => k !== kb[i])){ return false }
  return ka.every(k => sameValue(a[k], b[k]))
}

function equal(actual, expected, what){
  if(!sameValue(actual, expected)){
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`)
  }
}

// Resolves with the first value `register` hands to its callback; rejects after `ms`.
function waitFor(what, register, ms = WAIT_MS){
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Mismatch(`timed out after ${ms} ms waiting for ${what}`)), ms)
    let done = false
    register(value => {
      if(done){ return }
      done = true
      clearTimeout(timer)
      resolve(value)
    })
  })
}

// A queue of values fed by callbacks, read in order with `next(what)`.
class Inbox {
  constructor(name){
    this.name = name
    this.items = []
    this.waiters = []
  }

  put(item){
    const waiter = this.waiters.shift()
    if(waiter){ waiter(item) } else { this.items.push(item) }
  }

  next(what = this.name, ms = WAIT_MS){
    if(this.items.length > 0){ return Promise.resolve(this.items.shift()) }
    return waitFor(`${what} (${this.name})`, resolve => this.waiters.push(resolve), ms)
  }

  // Drops everything queued.
  clear(){ this.items = [] }

  // Fails if anything is queued (an item that should not have arrived).
  assertEmpty(what){
    if(this.items.length > 0){ fail(`${what}: unexpected ${show(this.items)}`) }
  }
}

// The reply of a push (join, leave or user push) as {status, response}. `statuses` lists the
// statuses to listen for besides ok, error and timeout (the official client dispatches on the
// exact status string, so a custom one must be named).
function reply(push, what, statuses = []){
  return waitFor(`the reply to ${what}`, resolve => {
    for(const status of ["ok", "error", "timeout", ...statuses]){
      push.receive(status, response => resolve({status, response}))
    }
  })
}

async function expectReply(push, what, status, response){
  const got = await reply(push, what, status === "ok" || status === "error" ? [] : [status])
  equal(got.status, status, `status of the reply to ${what}`)
  if(response !== undefined){ equal(got.response, response, `response to ${what}`) }
  return got.response
}

// A Socket of the official client over the `ws` package (node 20 has no global WebSocket).
// Records what the socket sees: `opens`, `closes` (close codes), `errors` (messages) and, in a
// `Log`, `messages` (every decoded inbound message).
function makeSocket(url, opts = {}){
  const socket = new Socket(url, {transport: WebSocket, ...opts})
  const seen = {
    opens: new Inbox("socket opens"),
    closes: new Inbox("socket closes"),
    errors: new Inbox("socket errors"),
    messages: new Log("socket messages"),
  }
  socket.onOpen(() => seen.opens.put(true))
  socket.onClose(event => seen.closes.put(event && event.code))
  socket.onError(error => seen.errors.put(error && (error.message || String(error))))
  socket.onMessage(msg => seen.messages.put(msg))
  return {socket, seen}
}

// Every item ever put, searchable from any position, for checks that must not consume what
// other checks look at (such as the raw inbound messages).
class Log {
  constructor(name){
    this.name = name
    this.items = []
    this.waiters = []
  }

  put(item){
    this.items.push(item)
    const index = this.items.length - 1
    this.waiters = this.waiters.filter(w => {
      if(index < w.since || !w.pred(item)){ return true }
      w.resolve(item)
      return false
    })
  }

  // Where the log ends now: pass it to `find` to look only at later items.
  mark(){ return this.items.length }

  // The first item at or after `since` that matches `pred`, waiting for it if needed.
  find(what, pred, since = 0, ms = WAIT_MS){
    const found = this.items.slice(since).find(pred)
    if(found !== undefined){ return Promise.resolve(found) }
    return waitFor(`${what} (${this.name})`, resolve => this.waiters.push({pred, since, resolve}), ms)
  }

  // Every item at or after `since` that matches `pred`, now.
  filter(pred, since = 0){ return this.items.slice(since).filter(pred) }
}

// Records a channel's lifecycle (phx_error / phx_close as the channel sees them) and the
// given events.
function watchChannel(channel, events = []){
  const seen = {
    errors: new Inbox(`${channel.topic} errors`),
    closes: new Inbox(`${channel.topic} closes`),
    events: new Inbox(`${channel.topic} events`),
  }
  channel.onError(reason => seen.errors.put(reason))
  channel.onClose(reason => seen.closes.put(reason))
  for(const event of events){
    channel.on(event, (payload, ref, joinRef) => seen.events.put({event, payload, ref, joinRef}))
  }
  return seen
}

// ----- control channel to the Rust test driving the server -----
//
// A request is one stdout line `@@phx-ctl <command>`; the driver answers with one stdin line
// `@@phx-ctl-ok <command>` once the server did it.

let stdinLines = null

function control(command){
  if(!stdinLines){
    stdinLines = new Inbox("control answers")
    readline.createInterface({input: process.stdin}).on("line", line => stdinLines.put(line))
  }
  process.stdout.write(`@@phx-ctl ${command}\n`)
  return stdinLines.next(`the driver to do "${command}"`).then(line => {
    equal(line, `@@phx-ctl-ok ${command}`, `answer to control command "${command}"`)
  })
}

// Runs one named step: its name is logged, and a failure names it.
async function step(name, body){
  currentStep = name
  process.stdout.write(`step: ${name}\n`)
  return body()
}

// Runs the scenario, then exits: 0 on success, 1 with a message on any failure.
function main(scenario){
  const url = process.argv[2]
  if(!url){
    process.stderr.write("usage: node <script> ws://HOST:PORT/socket\n")
    process.exit(2)
  }
  const die = error => {
    const message = error instanceof Mismatch ? error.message : (error && error.stack) || String(error)
    process.stderr.write(`FAIL in step "${currentStep}": ${message}\n`)
    process.exit(1)
  }
  process.on("uncaughtException", die)
  process.on("unhandledRejection", die)
  const watchdog = setTimeout(() => die(new Mismatch(`the script did not finish in ${SCRIPT_MS} ms`)), SCRIPT_MS)
  scenario(url).then(() => {
    clearTimeout(watchdog)
    process.stdout.write("PASS\n")
    process.exit(0)
  }, die)
}

module.exports = {
  Presence,
  Socket,
  WAIT_MS,
  check,
  control,
  equal,
  expectReply,
  fail,
  hex,
  main,
  makeSocket,
  reply,
  sameValue,
  show,
  step,
  waitFor,
  watchChannel,
  Inbox,
  Log,
}
