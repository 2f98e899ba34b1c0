// Package mqttconn is the network connection sensorgate hands to paho, for
// the MQTT source (package mqttsub) and the MQTT uplink alike.
//
// paho reads every packet with several small reads (the header byte by
// byte) and writes every packet with its own write; at tens of thousands
// of messages per second those system calls, and the goroutine wake-ups
// each one causes, were most of the gateway's CPU. A [Conn]:
//
//   - reads through a 32 KiB buffer, and after a read that brought in
//     little waits a configurable time before reading again, so that
//     messages gather in the socket buffer and one wake-up of paho's
//     goroutines carries many (the source's read_coalesce; the uplink, which
//     mostly reads PUBACKs, does not wait). A peer that holds back until we
//     answer, as a broker's QoS 1/2 in-flight window does, would be slowed
//     to one window per wait: for such connections (New's windowed) waits
//     that gather no more than an eager read are given up for a while;
//   - coalesces writes: Write appends to a buffer (at most 256 KiB pending;
//     Write waits beyond that) that a flusher goroutine writes out while the
//     next packets queue up, so a busy connection sends many packets per
//     system call (PUBACKs of a QoS 1 subscription, PUBLISHes of the
//     uplink) and an idle one sends each at once, with no timer.
//
// Guarantees: bytes are read and written in order and unchanged. Write
// reports the error of an earlier failed flush, so a broken connection is
// noticed on the next write. Close flushes what is queued (waiting at most
// a second for a peer that does not read) before closing, and half-closes
// first so that the peer sees the last packets (a DISCONNECT) before the
// connection goes; Abort closes without flushing. Deadlines set by paho
// apply to reads; each flush has its own write deadline (30 s).
package mqttconn
