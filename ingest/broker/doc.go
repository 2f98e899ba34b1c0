// Package broker is sensorgate's local broker mode: an embedded MQTT broker
// (mochi-mqtt v2) so that field nodes (ESP32 and the like) publish to the
// gateway itself, with no mosquitto to install.
//
// # Basics
//
//	broker:
//	  enabled: true
//	  listen: 127.0.0.1:1883        # default; field nodes on the LAN need e.g. 0.0.0.0:1883
//	  users_file: /etc/sensorgate/users.yaml
//	  tls: {cert_file: server.pem, key_file: server.key}   # optional; client_ca_file for mutual TLS
//	  max_packet_size: 1048576      # default 1 MiB
//	  max_inflight: 8192            # per client: unacknowledged QoS 1/2 kept before dropping
//	  receive_maximum: 1024         # per client: QoS 1/2 publishes awaiting our ack
//	  max_client_writes_pending: 8192
//
// The users file holds bcrypt hashes ([HashPassword]) and per-user topic
// ACLs; %u in a rule stands for the username and %c for the client id:
//
//	users:
//	  - username: node-1
//	    password_hash: "$2a$10$..."
//	    acl:
//	      - {topic: "sensors/%u/#", access: write}
//	      - {topic: "cmd/%u", access: read}
//
// A user without ACL rules may publish and subscribe anywhere. A publish
// outside the ACL is dropped (QoS 0) or ends the connection (QoS 1/2 on
// MQTT 3.1.1; MQTT 5 clients get a not-authorized acknowledgement); a
// subscription outside it is refused (SUBACK 0x80). Both are counted in
// [Stats].ACLDenied, failed logins in AuthFailures.
//
// # Security defaults
//
// The broker listens on loopback by default. Bound to any other address it
// refuses to start without authentication: users must be configured and
// allow_anonymous may not be true. On loopback without users, anonymous
// clients are allowed (that is the "publish to localhost" developer setup).
// A successful bcrypt check is cached per user (as a SHA-256 of the
// password), so reconnecting nodes do not cost a bcrypt each time.
//
// # How the gateway reads from it
//
// Over loopback, not through mochi's inline client: the gateway's own
// subscriptions are ordinary mqttsub sources, so QoS, flow control and
// held acknowledgements behave exactly as with an external broker. The
// broker opens a second, private listener on 127.0.0.1 (random port) that
// accepts only one internal user whose password is generated at every start;
// [Broker.LocalClient] returns that URL and the credentials, which cmd puts
// into the mqttsub config. The internal user is refused on the public
// listener and everyone else on the private one, so field nodes cannot
// bypass their ACLs through it.
//
// # Flow control towards the gateway's own source
//
// That source is durable by default: it holds each PUBACK until the engine
// has committed the message. mochi applies no in-flight window to an MQTT
// 3.1.1 subscriber (it sends everything at once; only MQTT 5 clients get
// a send quota from their receive maximum), so the embedded broker never
// throttles it. What bounds it is max_inflight (default 8192, mochi's): a
// client with that many unacknowledged messages gets no more, the excess
// is dropped and counted in Stats.InflightDropped; the same bound applies
// to what is queued for the gateway's persistent session while it
// reconnects. [Broker.LocalInFlight] (1024, or max_inflight/4 if less) is
// the inflight the local source should declare: the engine then commits
// at the latest every 1024 waiting messages, far below the drop point even
// at 20k msg/s with a slow SD card. receive_maximum (default 1024) bounds
// a publishing field node's unacknowledged QoS 1/2 messages; the broker
// acknowledges them at once.
//
// # Lifecycle
//
// [New] validates the config, loads the users file and TLS material, and
// binds both listeners (a port in use is reported there). [Broker.Run]
// serves until its context ends, then disconnects every client and closes
// the listeners. [Broker.Close] releases the listeners of a broker that
// never ran.
//
// # Caveats
//
//   - Sessions and retained messages live in memory: a gateway restart
//     forgets them (field nodes re-subscribe on reconnect anyway). A
//     message the broker acknowledged to a field node but the gateway had
//     not committed yet is lost by a crash: durable ingest is exactly once
//     from the broker's queue on, across reconnects of the local source,
//     not across a restart of the process that holds the broker.
//   - [Broker.ReloadUsers] re-reads the users file (for SIGHUP) without
//     dropping connections; a changed listen address or TLS material needs a
//     new Broker.
package broker
