// Package uplinktest holds what the tests of the uplink core and of its
// transports share: an in-memory outbox whose failures a test controls,
// encoded records to put into it, and a runner for Run. It imports nothing
// of the uplink, so the core's own tests can use it too; the MQTT broker,
// PKI and WaitFor come from test/mqtttest.
//
// # Caveats
//
//   - Outbox is not durable and does not check lanes or sizes; tests of
//     those use a real buffer.Outbox in t.TempDir().
package uplinktest
