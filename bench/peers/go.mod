module github.com/ternmq/mqtt/bench/peers

go 1.26

replace github.com/ternmq/mqtt => ../..

require (
	github.com/256dpi/gomqtt v0.14.4
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/ternmq/mqtt v0.0.0-00010101000000-000000000000
)

require (
	github.com/256dpi/mercury v0.2.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/rs/xid v1.4.0 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
