"""An MQTT client driven by tern's interoperability tests: Eclipse paho-mqtt.

Reads one JSON command a line on stdin, and writes one JSON event a line on
stdout (see script_test.go for the protocol). Needs paho-mqtt 1.6 (Debian's
python3-paho-mqtt) and runs under /usr/bin/python3.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt

lock = threading.Lock()


def out(**event):
    with lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


connected_before = False


def on_connect(client, userdata, flags, rc):
    # paho reconnects by itself when its connection is lost: the first
    # CONNACK answers the connect command, later ones are reconnections.
    global connected_before
    out(ev="reconnack" if connected_before else "connack", rc=rc,
        sp=bool(flags.get("session present")))
    connected_before = True
    if rc != 0:
        # A refused client stops here instead of retrying.
        client.disconnect()


def on_message(client, userdata, msg):
    out(ev="msg", topic=msg.topic, payload=msg.payload.decode("utf-8", "replace"),
        qos=msg.qos, retain=bool(msg.retain))


def on_subscribe(client, userdata, mid, granted):
    out(ev="suback", granted=list(granted))


def on_unsubscribe(client, userdata, mid):
    out(ev="unsuback")


def on_disconnect(client, userdata, rc):
    # rc 0: after a disconnect command; otherwise the connection was lost.
    out(ev="closed" if rc == 0 else "lost", rc=rc)


client = None
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        if op == "connect":
            transport = cmd.get("transport", "tcp")
            connected_before = False
            client = mqtt.Client(client_id=cmd["id"], clean_session=cmd["clean"],
                                 protocol=mqtt.MQTTv31 if cmd.get("level") == 3 else mqtt.MQTTv311,
                                 transport="websockets" if transport in ("ws", "wss") else "tcp")
            if transport in ("ws", "wss"):
                client.ws_set_options(path=cmd["path"])
            if transport in ("tls", "wss"):
                client.tls_set(ca_certs=cmd["ca"], certfile=cmd.get("cert"), keyfile=cmd.get("key"))
            if "user" in cmd:
                client.username_pw_set(cmd["user"], cmd.get("password"))
            if "will" in cmd:
                w = cmd["will"]
                client.will_set(w["topic"], w["payload"], w["qos"], w["retain"])
            client.on_connect = on_connect
            client.on_message = on_message
            client.on_subscribe = on_subscribe
            client.on_unsubscribe = on_unsubscribe
            client.on_disconnect = on_disconnect
            client.reconnect_delay_set(min_delay=1, max_delay=1)
            client.connect(cmd["host"], cmd["port"], cmd["keepalive"])
            client.loop_start()
        elif op == "sub":
            client.subscribe([(f, q) for f, q in cmd["filters"]])
        elif op == "unsub":
            client.unsubscribe(cmd["filters"])
        elif op == "pub":
            info = client.publish(cmd["topic"], cmd["payload"], cmd["qos"], cmd["retain"])
            info.wait_for_publish()
            out(ev="pubdone", rc=info.rc)
        elif op == "disconnect":
            client.disconnect()
            client.loop_stop()
        else:
            out(ev="error", error="unknown op " + op)
    except Exception as e:  # reported to the test, which fails on it
        out(ev="error", error=repr(e))
