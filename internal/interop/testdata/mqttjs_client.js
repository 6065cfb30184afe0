// An MQTT client driven by tern's interoperability tests: MQTT.js 5.
//
// Reads one JSON command a line on stdin, and writes one JSON event a line
// on stdout (see script_test.go for the protocol). Run `npm ci` in
// internal/interop first.
'use strict'

const fs = require('fs')
const mqtt = require('mqtt')
const readline = require('readline')

function out (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

let client = null
const handlers = {
  connect (cmd) {
    const opts = {
      host: cmd.host,
      port: cmd.port,
      protocol: { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }[cmd.transport || 'tcp'],
      protocolVersion: cmd.level === 3 ? 3 : 4,
      protocolId: cmd.level === 3 ? 'MQIsdp' : 'MQTT',
      clientId: cmd.id,
      clean: cmd.clean,
      keepalive: cmd.keepalive,
      // A refused or lost client stays down unless asked to reconnect.
      reconnectPeriod: cmd.reconnect || 0,
      connectTimeout: 10000
    }
    if (cmd.path) opts.path = cmd.path
    if (cmd.ca) {
      opts.ca = fs.readFileSync(cmd.ca)
      opts.rejectUnauthorized = true
      if (cmd.cert) {
        opts.cert = fs.readFileSync(cmd.cert)
        opts.key = fs.readFileSync(cmd.key)
      }
    }
    if (cmd.user !== undefined) {
      opts.username = cmd.user
      opts.password = cmd.password
    }
    if (cmd.will) {
      opts.will = { topic: cmd.will.topic, payload: Buffer.from(cmd.will.payload), qos: cmd.will.qos, retain: cmd.will.retain }
    }
    client = mqtt.connect(opts)
    // The first CONNACK answers the connect command, later ones are
    // reconnections.
    let connectedBefore = false
    client.on('connect', (ack) => {
      out({ ev: connectedBefore ? 'reconnack' : 'connack', rc: ack.returnCode, sp: !!ack.sessionPresent })
      connectedBefore = true
    })
    client.on('offline', () => out({ ev: 'lost' }))
    client.on('error', (err) => {
      // A refused CONNACK is an error carrying the return code.
      if (typeof err.code === 'number') {
        out({ ev: 'connack', rc: err.code, sp: false })
      } else {
        out({ ev: 'error', error: String(err) })
      }
    })
    client.on('message', (topic, payload, packet) => {
      out({ ev: 'msg', topic, payload: payload.toString('utf8'), qos: packet.qos, retain: !!packet.retain })
    })
  },
  sub (cmd) {
    const filters = {}
    for (const [f, q] of cmd.filters) filters[f] = { qos: q }
    client.subscribe(filters, (err, granted) => {
      // A SUBACK with a failure code (0x80) comes as an error carrying
      // the SUBACK packet.
      if (err && err.packet && Array.isArray(err.packet.granted)) {
        out({ ev: 'suback', granted: err.packet.granted })
        return
      }
      if (err) {
        out({ ev: 'error', error: String(err) })
        return
      }
      out({ ev: 'suback', granted: granted.map((g) => g.qos) })
    })
  },
  unsub (cmd) {
    client.unsubscribe(cmd.filters, (err) => out(err ? { ev: 'error', error: String(err) } : { ev: 'unsuback' }))
  },
  pub (cmd) {
    client.publish(cmd.topic, cmd.payload, { qos: cmd.qos, retain: cmd.retain }, (err) => {
      out(err ? { ev: 'error', error: String(err) } : { ev: 'pubdone' })
    })
  },
  disconnect () {
    client.end(false, () => out({ ev: 'closed' }))
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line)
  const h = handlers[cmd.op]
  if (!h) {
    out({ ev: 'error', error: 'unknown op ' + cmd.op })
    return
  }
  try {
    h(cmd)
  } catch (err) {
    out({ ev: 'error', error: String(err) })
  }
}).on('close', () => process.exit(0))
