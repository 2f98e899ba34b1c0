// Package mqttsub is the MQTT source of sensorgate: it subscribes to topic
// filters on a broker with paho (eclipse/paho.mqtt.golang) and turns the
// messages into readings with the decoders of package decode.
//
// # Basics
//
// A [Config] is one entry of the `sources.mqtt:` list: one broker URL
// (tcp://, ssl://, ws://, wss://), credentials, TLS, keepalive, session
// kind, and any number of [Subscription]s, each with its topic filter, QoS,
// payload format and mapping:
//
//	sources:
//	  mqtt:
//	    - broker: tcp://127.0.0.1:1883
//	      username: gateway
//	      password_file: /etc/sensorgate/mqtt.pw
//	      keepalive: 30s
//	      inflight: 20                  # the broker's in-flight window for us (mosquitto's default)
//	      queue_size: 16384
//	      max_payload: 65536
//	      subscriptions:
//	        - topic: "sensors/+/telemetry"
//	          qos: 1                    # durable by default: acked after the commit
//	          format: json
//	          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}
//	        - topic: "debug/#"
//	          qos: 0                    # not durable by default (durable: true opts in)
//
// Payload formats (package decode): json (a configurable field mapping),
// senml (SenML JSON, RFC 8428), senml_cbor (SenML CBOR, RFC 8428 section
// 6), msgpack (the ingest.ReadingBatch another sensorgate forwards) and
// number (a bare number, sensor and metric from the topic by a template such
// as site/{sensor}/{metric}). Each subscription has its own decoder and
// mapping block (json:, senml:, msgpack:, number:).
//
// [New] validates the config and loads secrets and TLS material; [Subscriber.Run]
// connects, subscribes and sends readings until its context ends. Defaults:
// keepalive 30s, QoS 1/2 subscriptions durable and then a persistent
// session (clean_session: false; otherwise clean), inflight 20, queue
// 16,384 messages (queue_size) and 8 MiB of QoS 0 payload (queue_bytes),
// payloads up to 64 KiB, connect timeout 10s, reconnect backoff 1s
// doubling to 30s with jitter.
//
// # Durable subscriptions: acknowledged means committed
//
// A durable subscription (the default at QoS 1 and 2) hands each
// message's readings to the pipeline at once; the last of them carries an
// [ingest.Receipt]. The rules engine completes the receipt (Done, once, in
// the order the readings arrived) after the bbolt checkpoint that holds
// the readings' effect is committed, and only then does this source send
// the PUBACK (QoS 1) or PUBREC (QoS 2). Acknowledgements leave strictly in
// receive order (MQTT 3.1.1 §4.6): every QoS 1/2 message takes its place in
// a per-connection queue (a ring whose slots and receipts are reused: no
// allocation per message), and the queue is emptied from its head only.
// Non-durable messages are done when handed on, messages with nothing to
// hand on (malformed, too large, no subscription) at once, durable ones
// when their receipt is done; each still waits for those before it.
//
// Done(err) means the engine gave up committing: that message and every
// one after it stay unacknowledged on this connection, the connection is
// cut (Stats.AckFailures counts it) and the persistent session's broker
// delivers them again.
//
// With acknowledgements held, throughput is the broker's in-flight window
// divided by the commit latency: inflight tells cmd that window, and the
// engine commits as soon as that many receipts are waiting (the minimum
// over durable sources). Broker settings: mosquitto max_inflight_messages
// (default 20; raise it, e.g. 1000, for high rates), EMQX mqtt.max_inflight
// (default 32), HiveMQ applies no window to MQTT 3 clients (set inflight
// to the commit batch you want, e.g. 1024, under its max-queued-messages),
// the embedded broker: see package broker.
//
// # Redelivery
//
// paho drops an Ack for a message of an earlier connection, and a
// persistent session's broker delivers every unacknowledged message again
// after a reconnect, with DUP=1 and the same packet id. A message whose
// readings were committed but whose PUBACK never left must not be counted
// twice, so the receipt's Key ("src/mqtt/<client_id>/" + the packet id, 2
// bytes big-endian; see [StatePrefix]) and Value (the 8-byte FNV-1a hash of
// topic and payload) are written in the same transaction as the commit,
// and the source keeps the same table in memory (512 KiB), loaded at [New]
// through Options.State (buffer.Outbox.LoadState). A message with DUP=1
// whose packet id and hash are in the table is not handed on: it is
// acknowledged in its turn and counted in Stats.Redelivered. A first
// delivery (DUP=0) under an id drops its entry (the broker had our PUBACK
// for the earlier one). Run does not connect again until every receipt of
// the last connection has been settled, so that a redelivery cannot
// overtake the commit of its first delivery (that wait is bounded by the
// engine's commit cadence; it is logged every 5 s, and cancelling Run
// still stops it).
//
// # Flow control
//
// paho delivers messages on its own goroutine; the handler never decodes
// there. It stamps the arrival time and hands the message to a bounded queue
// (queue_size) that Run drains: Run decodes, sends every reading on out
// (waiting while out is full), and only then acknowledges the message.
//
//   - QoS 0: when the queue is full the message is dropped and counted in
//     Stats.Dropped. This is the only place this source drops data.
//   - QoS 1 and 2: paho's auto-ack is disabled; the PUBACK/PUBREC goes out
//     after the readings were handed on (durable: after their commit, see
//     below), so a slow pipeline leaves messages unacknowledged and the
//     broker's in-flight window (mosquitto's max_inflight_messages, EMQX's
//     max_inflight) stops it from sending more. If the queue is
//     nevertheless full, the handler waits for room (Stats.Held counts
//     that); nothing is dropped.
//
// Messages are matched to subscriptions by topic, first matching filter in
// config order; when filters overlap, a broker may deliver a message once per
// matching subscription and each copy is decoded.
//
// # Connections
//
// Subscriptions are made in the on-connect handler, so every reconnection
// subscribes again, whether or not the broker kept the session. A broker that
// is down at start or goes away later is retried for ever with jittered
// exponential backoff; each failure is counted (Stats.ConnectFailures),
// logged rate-limited, and kept in [Subscriber.LastError] (a refused
// password wraps paho's packets.ErrorRefusedBadUsernameOrPassword or
// ErrorRefusedNotAuthorised). Run drives reconnection itself instead of
// paho's AutoReconnect so that cancelling it returns promptly and leaves no
// goroutine behind. Passwords come from password_file or password_env
// (password inline works but is discouraged), are read again at every
// connect (a rotated password file is used by the next attempt; if it
// cannot be read, the last password read is used and the error recorded)
// and are never logged: Config implements slog.LogValuer and fmt.Stringer
// without them. The TLS files (tls.ca_file, cert_file, key_file) are
// read again at every connect too, so renewed certificates need no restart.
//
// # Performance
//
// The connection is opened by internal/mqttnet's dialer, shared with the
// uplink (tcp:// and ssl:// with proxy environment variables honoured as
// paho does, ws:// and wss:// by paho's WebSocket dialer) and wrapped in
// an mqttnet.Conn: reads go through a 32 KiB buffer (paho reads
// every packet header byte by byte), and after a read that brought in
// little the next one waits read_coalesce (default 5ms) so that messages
// gather in the socket buffer: at moderate rates one wake-up of paho's
// goroutine chain then carries about a hundred messages instead of one
// (7.0 -> 4.0-4.5 CPU-seconds per million readings at 20k msg/s; 2ms gave
// 5.0). It adds at most read_coalesce of latency. Writes are coalesced too,
// so the PUBACKs of a burst of QoS 1 messages leave in a few system calls.
// Decoding does
// not allocate per reading; paho itself allocates about 35 times per message
// (packet, payload, message, token). See BenchmarkSubscriberMosquitto.
//
// # Caveats
//
//   - A decode failure is counted by reason (Stats.DecodeErrors: the
//     decode.Reasons plus no_subscription) and logged at most every 10 s; the
//     message is still acknowledged, it will not get better by redelivery.
//   - On shutdown, QoS 0 messages still in the queue are lost; QoS 1/2 ones
//     were not acknowledged and come back with a persistent session. A
//     clean stop acknowledges only what is committed: receipts still
//     pending when Run returns are left (the broker delivers those
//     messages again at the next start, and the table recognises the ones
//     committed by then). The next Run of the same Subscriber waits for
//     them before it connects; an engine must therefore complete every
//     receipt it took, with an error if it will never commit it.
//   - Non-durable QoS 1/2 messages are acknowledged once handed to the
//     pipeline, not stored: a crash loses what the pipeline held.
//   - durable with clean_session: true is allowed (logged at start): the
//     broker then forgets what was pending when a connection ended.
//   - A message whose readings are cut half-way by a hard stop (out still
//     full 3 s after the cancel) leaves its first readings handed on and
//     the message unacknowledged: they count twice after its redelivery.
//   - Recognition is by packet id and content: a genuinely new message
//     that arrives with DUP=1 under the id of a committed one, with a
//     byte-identical topic and payload, is taken for its redelivery and
//     not counted. A broker sets DUP=1 on a new message when its first
//     delivery was lost with a connection; mochi (the embedded broker)
//     also sets it on every message it queued for the offline persistent
//     session, and numbers the messages of each new connection from 1
//     again, so ids come back sooner than after 65,535 messages. Payloads
//     with a timestamp or a sequence number are safe; constant payloads
//     (a bare "1" from a door contact on one topic) are the ones at risk.
//   - Without Options.State, a redelivery of a message committed by an
//     earlier process is counted again.
//   - The embedded broker keeps sessions in memory: after a gateway crash
//     it cannot deliver again what it had acknowledged to field nodes.
package mqttsub
