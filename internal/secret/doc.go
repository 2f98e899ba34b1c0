// Package secret reads a credential (an MQTT password, an HTTP bearer
// token) that the configuration gives inline, as a file or as the name of
// an environment variable.
//
// # Basics
//
// A [Source] names the three places; at most one is set (Validate checks).
// [Source.Read] looks again each time it is called: call it at every
// connect (or request) and a rotated password file or a renewed token is
// used without a restart. A file holds the secret on its first line;
// white space around it (the newline editors add, a CRLF) is trimmed.
//
// # Guarantees
//
// A secret never appears in an error: errors name the YAML key and the
// file or variable, and wrap [ErrMissing] when the file cannot be read, is
// empty, or the variable is unset or empty. Source's String and LogValue
// say where the secret comes from, never what it is, so logging a Source
// (or a config holding one) by accident leaks nothing. [RedactURL] takes
// the password and every query value out of a URL before it is logged,
// wrapped in an error or reported; [RedactURLError] does it to the URL in
// net/http's errors.
//
// # Caveats
//
// An inline secret is returned as written, even empty (no password). A
// file or variable that yields an empty secret is an error rather than an
// empty password, because that is almost always a deployment mistake (the
// file not yet written by the secret store). Reading a file costs a system
// call per connect, which is nothing next to a TCP and TLS handshake.
package secret
