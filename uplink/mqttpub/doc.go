// Package mqttpub is the uplink transport that publishes to an MQTT broker
// with paho at QoS 1. It implements uplink.Transport: the uplink core
// feeds, encodes, dead-letters and acknowledges; this package connects,
// publishes, turns PUBACKs into acknowledgements, watches for overdue
// PUBACKs and announces presence (birth, last will).
//
// # Delivery
//
// Data messages are published with QoS 1, up to max_inflight at a time.
// A record is acknowledged in the outbox only after the broker's PUBACK
// for its message. The PUBACK signal does not come from paho's publish
// token: paho v1.5.1 completes a token without an error when it re-queues
// an in-flight message after a reconnect, before any PUBACK arrives
// (TestPahoTokenCompletesWithoutPuback shows it). Instead every connection
// gets its own paho Store; paho deletes an outbound PUBLISH from its store
// when, and only when, it reads the matching PUBACK, and that delete is
// what acknowledges the records. Connections use a clean session with
// paho's auto-reconnect and resume off: the uplink reconnects itself with
// jittered exponential backoff and, after every reconnect, re-sends from
// the oldest record not yet acknowledged. Records in flight when a
// connection drops are therefore sent again with the same record_id
// (at least once; duplicates only from the in-flight window).
//
// A connection whose oldest unacknowledged message has waited longer than
// ack_timeout is closed and re-established: a link that black-holes
// traffic without a reset is detected by this watchdog or by keepalive,
// whichever is first.
//
// The connection is opened by internal/mqttnet, the dialer the MQTT
// sources use too (tcp, tls, ws, wss): TCP dials honour ALL_PROXY and
// NO_PROXY (a SOCKS5 proxy), WebSocket dials HTTPS_PROXY, and a stop cuts
// an attempt that hangs. paho gets mqttnet's buffered Conn: reads are
// buffered and writes coalesced by a flusher goroutine, so that a busy
// connection sends many packets per system call while an idle one sends
// each packet at once. On a clean
// shutdown the uplink waits up to 2 s for outstanding PUBACKs, publishes
// its retained "offline" status and disconnects; everything PUBACKed is
// acknowledged in the outbox before Run returns.
//
// With status_topic set (the default), the uplink publishes a retained
// birth message {"state":"online","gateway":..,"uplink":..,"version":..,
// "started":..,"time":..} on connect, registers a retained last will
// {"state":"offline",...}, and publishes "offline" itself on a clean
// shutdown.
//
// # Caveats
//
//   - QoS 0 is not supported for data: without a PUBACK nothing can be
//     acknowledged safely.
//   - If a connection drops at the very moment a message is handed to
//     paho, that hand-off can wait up to min(ack_timeout, 10 s) before the
//     uplink notices and reconnects (paho stops reading its queue).
//   - A broker that drops the connection because of one particular message
//     (an ACL refusal, say) makes the uplink send it again after every
//     reconnect; Disconnects and LastError show it. max_message_bytes
//     covers the too-large case.
//   - The password file and the TLS files are read at every connect, so
//     rotated credentials and renewed certificates work without a restart;
//     the proxy environment is read once per process (golang.org/x/net/proxy).
package mqttpub
