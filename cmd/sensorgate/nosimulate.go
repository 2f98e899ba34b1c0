//go:build nosimulate

package main

// simulateCommand is empty in a nosimulate build: the production binary
// has no load generator (simulator/load and its MQTT clients).
func simulateCommand() []command { return nil }
