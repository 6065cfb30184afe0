// Package packet encodes and decodes the fourteen MQTT 3.1.1 control
// packets, and reads and writes them on streams.
//
// Every packet type is a struct: Connect, Connack, Publish, Puback, Pubrec,
// Pubrel, Pubcomp, Subscribe, Suback, Unsubscribe, Unsuback, Pingreq,
// Pingresp and Disconnect. Each implements Packet: it knows its encoded size
// and appends its wire form to a caller's slice, allocating nothing when the
// slice has room.
//
// Decode fills a caller-owned value from the bytes of one complete packet.
// Byte-slice fields such as Publish.Topic and Publish.Payload ALIAS THE INPUT:
// decoding copies nothing, and the fields are valid only as long as the input
// bytes are. For a Reader that means until the next call to ReadPacket or
// Next. Use Clone to keep a packet beyond that.
//
// Validation is strict in both directions: every rule of the MQTT 3.1.1
// specification that can be judged from the bytes of one packet is checked
// when decoding and when encoding, and a violation is reported as an *Error
// naming the rule it breaks (for example MQTT-3.3.2-2, a wildcard in a
// PUBLISH topic). That includes the syntax of topic filters in SUBSCRIBE and
// UNSUBSCRIBE (section 4.7: not empty, '#' and '+' each a whole level, '#'
// the last); what a filter's "$share/" prefix means is left to the broker. No input makes the decoder panic or allocate in proportion
// to a length it has not checked.
//
// Besides protocol level 4 (MQTT 3.1.1), CONNECT packets of level 3
// (protocol name "MQIsdp", MQTT 3.1) are decoded and encoded, since many
// devices still speak it; all other packets are the same in both versions.
package packet
