package packet

import (
	"strconv"
	"strings"
)

// maxShown is how many bytes of a payload String prints.
const maxShown = 32

// quote prints b as a Go string literal, cut to maxShown bytes.
func quote(b []byte) string {
	if len(b) <= maxShown {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:maxShown])) + "..."
}

// String describes the packet for logs.
func (p *Connect) String() string {
	var b strings.Builder
	level := p.Level
	if level == 0 {
		level = Level311
	}
	b.WriteString("CONNECT level=" + strconv.Itoa(int(level)))
	b.WriteString(" client=" + quote(p.ClientID))
	b.WriteString(" clean=" + strconv.FormatBool(p.CleanSession))
	b.WriteString(" keepalive=" + strconv.Itoa(int(p.KeepAlive)))
	if p.Will {
		b.WriteString(" will=" + quote(p.WillTopic) + " qos=" + strconv.Itoa(int(p.WillQoS)) +
			" retain=" + strconv.FormatBool(p.WillRetain) + " message=" + strconv.Itoa(len(p.WillMessage)) + "B")
	}
	if p.HasUsername {
		b.WriteString(" user=" + quote(p.Username))
	}
	if p.HasPassword {
		b.WriteString(" password=<hidden>") // never print secrets to logs
	}
	return b.String()
}

// String describes the packet for logs.
func (p *Connack) String() string {
	return "CONNACK session=" + strconv.FormatBool(p.SessionPresent) + " code=" +
		strconv.Itoa(int(p.ReturnCode)) + " (" + p.ReturnCode.String() + ")"
}

// String describes the packet for logs.
func (p *Publish) String() string {
	s := "PUBLISH topic=" + quote(p.Topic) + " qos=" + strconv.Itoa(int(p.QoS))
	if p.QoS > 0 {
		s += " id=" + strconv.Itoa(int(p.PacketID))
	}
	if p.Dup {
		s += " dup"
	}
	if p.Retain {
		s += " retain"
	}
	return s + " payload=" + strconv.Itoa(len(p.Payload)) + "B " + quote(p.Payload)
}

func ackString(t Type, id uint16) string { return t.String() + " id=" + strconv.Itoa(int(id)) }

// String describes the packet for logs.
func (p *Puback) String() string { return ackString(PUBACK, p.PacketID) }

// String describes the packet for logs.
func (p *Pubrec) String() string { return ackString(PUBREC, p.PacketID) }

// String describes the packet for logs.
func (p *Pubrel) String() string { return ackString(PUBREL, p.PacketID) }

// String describes the packet for logs.
func (p *Pubcomp) String() string { return ackString(PUBCOMP, p.PacketID) }

// String describes the packet for logs.
func (p *Unsuback) String() string { return ackString(UNSUBACK, p.PacketID) }

// String describes the packet for logs.
func (p *Pingreq) String() string { return "PINGREQ" }

// String describes the packet for logs.
func (p *Pingresp) String() string { return "PINGRESP" }

// String describes the packet for logs.
func (p *Disconnect) String() string { return "DISCONNECT" }

// String describes the packet for logs.
func (p *Subscribe) String() string {
	var b strings.Builder
	b.WriteString(ackString(SUBSCRIBE, p.PacketID))
	for _, s := range p.Subscriptions {
		b.WriteString(" " + quote(s.Filter) + ":" + strconv.Itoa(int(s.QoS)))
	}
	return b.String()
}

// String describes the packet for logs.
func (p *Suback) String() string {
	var b strings.Builder
	b.WriteString(ackString(SUBACK, p.PacketID) + " codes=")
	for i, c := range p.ReturnCodes {
		if i > 0 {
			b.WriteByte(',')
		}
		if c == SubackFailure {
			b.WriteString("failure")
		} else {
			b.WriteString(strconv.Itoa(int(c)))
		}
	}
	return b.String()
}

// String describes the packet for logs.
func (p *Unsubscribe) String() string {
	var b strings.Builder
	b.WriteString(ackString(UNSUBSCRIBE, p.PacketID))
	for _, f := range p.Filters {
		b.WriteString(" " + quote(f))
	}
	return b.String()
}
