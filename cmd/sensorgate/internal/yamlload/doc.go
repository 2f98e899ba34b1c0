// Package yamlload is the gateway's strict, position-aware YAML loader. It
// is generic over the target struct so that each package can keep a plain
// Config with yaml tags: Parse (1) parses to a node tree and (2) expands
// ${ENV} inside scalar values only (so a secret can never change the
// document's structure or its line numbers); Doc.Decode (3) walks the tree
// against the Go type to report every unknown key and (4) decodes, turning
// yaml's "line N: cannot unmarshal" into key-path errors; Doc.Locate (5)
// puts the line of each key path on validation errors.
//
// # Caveats
//
// The key check follows aliases (keys under an anchor are checked where
// they are used) and visits at most MaxNodes nodes, counting an anchor's
// nodes each time an alias reaches them: past that, Decode refuses the
// document as an alias bomb instead of walking billions of nodes. yaml's
// decoder compares every key of a mapping with every other, so Parse
// refuses a mapping of more than MaxMappingKeys keys (and mappings that
// together cost more than ten of that size) before anything is decoded.
// Bounding the file's size is the caller's part.
package yamlload
