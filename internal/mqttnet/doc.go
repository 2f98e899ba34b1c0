// Package mqttnet is the MQTT network plumbing shared by the MQTT source
// (ingest/mqttsub), the MQTT uplink and the embedded broker: the
// connection paho gets ([Conn]), the dialer ([Dial], [OpenConnection]),
// the client side of the YAML `tls:` block ([TLS]) and topic-filter
// checks ([ValidFilter], [MatchFilter]). One copy, so that a proxy, ALPN
// or a filter rule works the same on every side.
//
// # The connection
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
//     to one window per wait: for such connections (NewConn's windowed)
//     waits that gather no more than an eager read are given up for a while;
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
//
// # The dialer
//
// [Dial] opens tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// and wss://
// URLs (a missing port is 1883, or 8883 for the TLS schemes) and wraps the
// result in a [Conn]. TCP dials honour the proxy environment variables
// (ALL_PROXY, NO_PROXY; golang.org/x/net/proxy) and end when ctx ends, TLS
// handshakes too; WebSocket dials go through paho's dialer, which honours
// HTTPS_PROXY/NO_PROXY and is bounded by the connect timeout, not ctx.
// [LastConn] keeps the newest connection so that an attempt waiting for a
// CONNACK that will not come can be cut.
//
// # TLS
//
// [TLS] is the `tls:` block of sources and uplinks: ca_file, cert_file,
// key_file, server_name, alpn, insecure_skip_verify. [TLS.Build] reads the
// files each time it is called, so calling it at every connect picks up
// renewed certificates without a restart. TLS 1.2 is the minimum.
//
// # Caveats
//
// [ValidFilter] follows MQTT 3.1.1 section 4.7 and accepts $share/<group>/
// shared subscriptions; it does not limit the length of a filter (the
// broker does). [MatchFilter] expects a filter that passed ValidFilter.
package mqttnet
