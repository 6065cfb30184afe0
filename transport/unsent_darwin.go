package transport

// tcpNotSentLowat is TCP_NOTSENT_LOWAT of <netinet/tcp.h>, which package
// syscall does not name.
const tcpNotSentLowat = 0x201
