// The official phoenix.js client (tests/js/node_modules, pinned there) under node, on the
// phx-bench workloads. Run by `phx-bench` with NODE_PATH pointing at tests/js/node_modules:
//
//   node bench.js recv URL N BINARY(0|1)     receive N flood broadcasts on bench:0
//   node bench.js latency URL N INFLIGHT     N ping push -> reply round trips
//
// Prints one line `RESULT {...}` (or `ERROR ...` and exit code 1).
"use strict"

const {Socket} = require("phoenix")
const WebSocket = require("ws")

const TOPIC = "bench:0"
const STALL_MS = 10000

function fail(message){
  process.stdout.write(`ERROR ${message}\n`)
  process.exit(1)
}

function connect(url){
  const socket = new Socket(url, {transport: WebSocket})
  socket.onError(error => fail(`socket error: ${error && (error.message || error)}`))
  socket.connect()
  return socket
}

function join(socket){
  const channel = socket.channel(TOPIC, {})
  return new Promise((resolve, reject) => {
    channel.join()
      .receive("ok", () => resolve(channel))
      .receive("error", r => reject(new Error(`join refused: ${JSON.stringify(r)}`)))
      .receive("timeout", () => reject(new Error("join timed out")))
  })
}

async function recv(url, n, binary){
  const socket = connect(url)
  const channel = await join(socket)
  let frames = 0
  let bytes = 0
  let start = 0n
  let last = Date.now()
  const watchdog = setInterval(() => {
    if(Date.now() - last > STALL_MS){ fail(`stalled after ${frames} of ${n} messages`) }
  }, 1000)
  await new Promise(resolve => {
    channel.on("msg", payload => {
      // Read the payload as a user would: an ArrayBuffer for binary, an object for JSON.
      bytes += payload instanceof ArrayBuffer ? payload.byteLength : Object.keys(payload).length
      frames += 1
      if((frames & 4095) === 0){ last = Date.now() }
      if(frames === n){ resolve() }
    })
    start = process.hrtime.bigint()
    channel.push("flood", {n, binary})
  })
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  clearInterval(watchdog)
  process.stdout.write(`RESULT ${JSON.stringify({frames, lagged: 0, bytes, secs})}\n`)
  process.exit(0)
}

function pick(sorted, q){
  const i = Math.min(Math.max(Math.ceil(sorted.length * q), 1), sorted.length) - 1
  return sorted[i]
}

async function latency(url, n, inflight){
  const socket = connect(url)
  const channel = await join(socket)
  const ping = i => new Promise((resolve, reject) => {
    const t = process.hrtime.bigint()
    channel.push("ping", {n: i})
      .receive("ok", () => resolve(Number(process.hrtime.bigint() - t) / 1000))
      .receive("error", r => reject(new Error(`ping refused: ${JSON.stringify(r)}`)))
      .receive("timeout", () => reject(new Error("ping timed out")))
  })
  for(let i = 0; i < 100; i++){ await ping(i) }
  const rtts = new Float64Array(n)
  let sent = 0
  let done = 0
  const start = process.hrtime.bigint()
  await new Promise((resolve, reject) => {
    const issue = () => {
      while(sent < n && sent - done < inflight){
        const i = sent++
        ping(i).then(us => {
          rtts[done++] = us
          if(done === n){ resolve() } else { issue() }
        }, reject)
      }
    }
    issue()
  })
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  rtts.sort()
  const result = {count: n, p50_us: pick(rtts, 0.5), p99_us: pick(rtts, 0.99), p999_us: pick(rtts, 0.999), secs}
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
  process.exit(0)
}

const [mode, url, nArg, extra] = process.argv.slice(2)
const n = Number(nArg)
process.on("unhandledRejection", e => fail(e && e.message || String(e)))
if(mode === "recv"){
  recv(url, n, extra === "1")
} else if(mode === "latency"){
  latency(url, n, Number(extra || 1))
} else {
  fail("usage: node bench.js recv URL N BINARY | latency URL N INFLIGHT")
}
