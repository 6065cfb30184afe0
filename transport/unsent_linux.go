package transport

// tcpNotSentLowat is TCP_NOTSENT_LOWAT of <linux/tcp.h>, which package
// syscall does not name.
const tcpNotSentLowat = 25
