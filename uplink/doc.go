// Package uplink forwards the records of the durable outbox (package
// buffer) upstream: to an MQTT broker, to an HTTP endpoint, or to standard
// output for demos. A record leaves the outbox only once the upstream has
// confirmed it.
//
// # Basics
//
// [New] takes one entry of the YAML `uplinks:` list ([Config]), the outbox
// (anything with Read, Ack, Append and Subscribe: [Outbox]; *buffer.Outbox
// is one), the [Transport] and run-time [Options]. [Uplink.Run] forwards until its context is cancelled
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
// A summary's own "id" names its window and key, and "rev" its revision
// (omitted at 0): an id is emitted once, or again only with a higher rev
// that carries the window's complete counts (late readings folded in),
// never a difference. An upstream that keeps the highest rev per id has
// every reading exactly once, across restarts and crashes of the gateway
// (docs/durability.md); two records with one id and one rev (a record
// delivered twice, see record_id) have the same content.
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
// # Transports
//
// The core (this package) owns the loop: it reads and decodes the outbox,
// batches, encodes, renders topics, dead-letters, acknowledges, keeps the
// online state and the counters, and restarts a session after a jittered
// backoff. A [Transport] only moves bytes: its Session connects once and
// delivers what the [Link] hands it, reporting confirmations with
// Link.Ack. uplink/mqttpub (paho, QoS 1), uplink/httppost (net/http) and
// uplink/stdout implement it; cmd/sensorgate picks one per uplinks[].type,
// so a build can leave one out. Each transport's doc says how it confirms.
//
// # Bad records
//
// A record that ingest.DecodeRecord refuses can never be sent. It is moved
// to buffer.LaneDead, counted in Stats.BadRecords and Stats.DeadLettered,
// and never blocks its lane.
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
//   - Password and token files are read at every connect / request
//     (internal/secret), so rotated credentials work without a restart;
//     TLS files (internal/mqttnet's TLS, with ALPN) are re-read at every
//     MQTT connect. New reads each once, to fail early.
package uplink
