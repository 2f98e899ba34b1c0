// Package uplink forwards the records of the durable outbox (package
// buffer) upstream: to an MQTT broker, to an HTTP endpoint, or to standard
// output for demos. A record leaves the outbox only once the upstream has
// confirmed it.
//
// # Basics
//
// [New] takes one entry of the YAML `uplinks:` list ([Config]), the outbox
// (anything with Read, Ack and Notify: [Outbox]; *buffer.Outbox is one) and
// run-time [Options]. [Uplink.Run] forwards until its context is cancelled
// and returns nil; upstream failures are retried inside Run, never
// returned. [Uplink.Stats] exposes the counters, the connection state and
// the offline duration.
//
//	uplinks:
//	  - name: cloud
//	    type: mqtt                       # mqtt | http | stdout
//	    url: ssl://broker.example:8883   # tcp:// ssl:// tls:// mqtts:// ws:// wss://
//	    lanes: [alerts, summaries]       # default: alerts, summaries, raw
//	    topic: "gw/{gateway}/{lane}"     # {gateway} {name} {lane} {kind} {sensor} {metric}
//	    client_id: "sensorgate-{gateway}-{name}"
//	    username: gw-1
//	    password_file: /etc/sensorgate/mqtt.token   # or password, or password_env
//	    keepalive: 30s
//	    status_topic: "sensorgate/{gateway}/status" # birth + last will, retained
//	    format: json                     # json | msgpack | senml
//	    max_inflight: 64                 # QoS 1 messages awaiting PUBACK
//	    batch_size: 1                    # records per message (>1: arrays)
//	    batch_bytes: 131072
//	    max_message_bytes: 131072        # AWS IoT's limit; 0 = none
//	    backoff: {min: 1s, max: 60s}
//	    ack_timeout: 30s
//	    tls: {ca_file: ca.pem, cert_file: gw.pem, key_file: gw.key, server_name: "", alpn: []}
//	  - name: api
//	    type: http
//	    url: https://ingest.example/v1/records
//	    lanes: [raw]
//	    token_file: /etc/sensorgate/api.token        # or token_env; sent as Bearer
//	    headers: {X-Tenant: acme}
//	    gzip: true
//	    timeout: 10s
//	    batch_size: 100
//
// Lanes are served in priority order: whenever the uplink fetches new
// records it takes them from the highest-priority lane that has any
// (alerts, then summaries, then raw); within a lane the order is FIFO. A
// lane may be served by one uplink only ([ValidateRouting]);
// [AssignDefaultLanes] gives uplinks without lanes the lanes nobody claims.
//
// # Message format (json)
//
// Each record becomes an envelope; upstream de-duplicates on record_id,
// which is the outbox record id ("<epoch>-<lane>-<seq>", stable across
// restarts and re-deliveries):
//
//	{"record_id":"5f3a9c-summaries-42","gateway":"gw-1","lane":"summaries","stored":1700000000000000000,
//	 "kind":"summary","summary":{...ingest.Summary json fields...}}
//	{"record_id":"5f3a9c-alerts-7","gateway":"gw-1","lane":"alerts","stored":...,
//	 "kind":"alert","alert":{...ingest.Alert json fields...}}
//	{"record_id":"5f3a9c-raw-9","gateway":"gw-1","lane":"raw","stored":...,"origin":"gw-0",
//	 "kind":"readings","readings":[{"sensor":"s1","metric":"t","value":21.5,"unit":"Cel",
//	   "time":1700000000000000000,"arrival":1700000000000000000}, ...]}
//
// Summary and Alert use the field names and omitempty rules of their json
// struct tags in package ingest; readings use the names shown (unit,
// orig_time and quality omitted when zero; origin only for forwarded
// batches). Times are Unix nanoseconds; stored is when the record was
// committed to the outbox. NaN and ±Inf become null. With batch_size 1 an
// MQTT message (and a stdout line) is one bare envelope; with batch_size >
// 1, and always for HTTP, the payload is a JSON array of envelopes.
//
// format msgpack sends the same envelope as a MessagePack map with the same
// keys, except that the body (key "summary", "alert" or "readings") is the
// record's own MessagePack encoding with the short keys of the ingest msg
// tags (s, m, st, ...). Batches are MessagePack arrays.
//
// format senml sends SenML JSON packs (RFC 8428, application/senml+json).
// Base name "<gateway>:<sensor>:" (for grouped summaries the group), names
// limited to the SenML alphabet (other characters become '_'), times in
// seconds. A summary gives records "<metric>:count" (bt = window end),
// ":mean", ":min", ":max", ":sum" and, when set, ":stddev", ":first",
// ":last", ":twa", ":delta", ":rate" and ":p50"-style quantiles (bu = the
// unit); an alert gives "<metric>" (value), "<metric>:alert:<rule>" (vs =
// fire/clear) and "<metric>:threshold"; a readings batch one record per
// reading. The first record of each outbox record carries the extension
// field "record_id" for de-duplication (not part of RFC 8428: SenML
// readers ignore it). Non-finite values are left out.
//
// # Delivery (MQTT)
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
// The uplink dials the connection itself (tcp, tls, ws, wss) and hands
// paho a package mqttconn Conn (shared with the MQTT source): reads are
// buffered and writes coalesced by a flusher goroutine, so that a busy connection sends many packets per
// system call while an idle one sends each packet at once. On a clean
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
// # Delivery (HTTP)
//
// Batches (up to batch_size records and about batch_bytes) are POSTed as
// the configured format, optionally gzip-compressed, with the configured
// headers and a bearer token. A 2xx acknowledges the batch. 429, 5xx, 408,
// 425, timeouts and network errors are retried with backoff (Retry-After,
// seconds or HTTP date, is honoured, up to an hour); 401, 403 and 407 are
// retried too, as they concern the credentials, not the records. Any other
// status (400, 404, 413, 422, ...) rejects the batch: a batch of several
// records is split in halves and each half sent again, so that only the
// records the upstream refuses on their own are moved to the dead lane,
// counted, and the lane moves on.
//
// # Bad records
//
// A record that ingest.DecodeRecord refuses can never be sent. It is moved
// to buffer.LaneDead (if the outbox implements [Appender], as
// *buffer.Outbox does) or else acknowledged and counted in
// Stats.Dropped; either way it is counted in Stats.BadRecords and never
// blocks its lane.
//
// # Stats
//
// [Uplink.Stats] counts messages, records and payload bytes sent (with
// re-sends), records acknowledged, re-sent, dead-lettered and dropped,
// connections made, failed and lost, errors, the records in flight, the
// connection state with the current and total offline time, and the last
// upstream error as text (a TLS or credentials problem shows up there, with
// a hint such as "set tls.server_name").
//
// # Caveats
//
//   - Order within a lane holds for first deliveries; a re-delivery after a
//     reconnect can follow newer records. Upstream should de-duplicate on
//     record_id.
//   - If acknowledging in the outbox fails (disk error), the records stay
//     and are sent again after the next reconnect or restart: duplicates,
//     never a loss.
//   - QoS 0 is not supported for data: without a PUBACK nothing can be
//     acknowledged safely.
//   - Several uplinks can share one outbox, but *buffer.Outbox has a single
//     coalesced Notify channel: only one uplink is woken per commit, the
//     others find new records within poll_interval (default 1 s).
//   - If a connection drops at the very moment a message is handed to
//     paho, that hand-off can wait up to min(ack_timeout, 10 s) before the
//     uplink notices and reconnects (paho stops reading its queue).
//   - A broker that drops the connection because of one particular message
//     (an ACL refusal, say) makes the uplink send it again after every
//     reconnect; Disconnects and LastError show it. max_message_bytes
//     covers the too-large case.
//   - The uplink's own dialer does not use HTTP(S)_PROXY / ALL_PROXY for
//     MQTT connections; HTTP uplinks use the environment's proxy settings.
//   - Password and token files are read at every connect / request, so
//     rotated credentials work without a restart; TLS files are re-read at
//     every MQTT connect.
package uplink
