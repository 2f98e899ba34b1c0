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
//	      clean_session: true
//	      queue_size: 16384
//	      max_payload: 65536
//	      subscriptions:
//	        - topic: "sensors/+/telemetry"
//	          qos: 0
//	          format: json
//	          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}
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
// keepalive 30s, clean session, queue 16,384 messages (queue_size) and
// 8 MiB of QoS 0 payload (queue_bytes), payloads up to 64 KiB, connect
// timeout 10s, reconnect backoff 1s doubling to 30s with jitter.
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
//     after the readings were handed on, so a slow pipeline leaves messages
//     unacknowledged and the broker's in-flight window (mosquitto's
//     max_inflight_messages, mochi's receive maximum) stops it from sending
//     more. If the queue is nevertheless full, the handler waits for room
//     (Stats.Held counts that); nothing is dropped.
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
//     were not acknowledged and come back with a persistent session
//     (clean_session: false and a stable client_id, the default id is stable).
//   - Without durable, acknowledgement means "handed to the pipeline", not
//     "stored". A subscription with durable: true (QoS 1/2) hands each
//     message's readings to Options.Journal and sends the PUBACK/PUBREC only
//     when the journal reports the commit; the readings still go on to the
//     pipeline at once. The journal (the buffer's bbolt journal) is what
//     makes windows survive a crash; this package only holds the ack.
//   - Delivery is at least once: a message redelivered by the broker (no
//     ack before a disconnect) gives its readings again.
package mqttsub
