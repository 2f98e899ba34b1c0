package decode

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Low-level JSON scanning over a byte slice. Every function takes the index
// of the first byte to look at and returns the index after what it consumed;
// a negative index means a syntax error at -(index+1).

// maxDepth bounds nesting so that hostile payloads cannot exhaust the stack.
const maxDepth = 64

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans a JSON string starting at b[i]=='"'. It returns the
// index of the first content byte, the index of the closing quote, whether
// the content holds escapes, and ok.
func scanString(b []byte, i int) (start, end int, escaped, ok bool) {
	i++
	start = i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return start, i, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, len(b), false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b, i+2); !ok {
					return 0, i, false, false
				}
				i += 6
			default:
				return 0, i, false, false
			}
			continue
		case c < 0x20:
			return 0, i, false, false
		}
		i++
	}
	return 0, len(b), false, false
}

// unescape appends the decoded form of the raw string contents s to dst.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2, ok2 := hex4(s, i+3)
					if ok2 {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							r = d
							i += 6
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// scanNumber checks the JSON number grammar from b[i] and returns the end
// index, whether the number is an integer (no fraction or exponent), and ok.
// It also accepts the non-standard tokens NaN, Infinity and -Infinity that
// Python's json module and some firmware emit, so that such values reach
// door validation and are counted there as not finite rather than as
// malformed payloads.
func scanNumber(b []byte, i int) (end int, integer, ok bool) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && (b[i] == 'N' || b[i] == 'I') {
		for _, tok := range [...]string{"NaN", "Infinity"} {
			if hasToken(b, i, tok) && (tok != "NaN" || i == start) {
				return i + len(tok), false, true
			}
		}
		return i, false, false
	}
	if i >= len(b) {
		return i, false, false
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false, false
		}
	}
	return i, integer, true
}

func hasToken(b []byte, i int, tok string) bool {
	return len(b)-i >= len(tok) && string(b[i:i+len(tok)]) == tok
}

// skipValue skips one JSON value starting at b[i] (no leading whitespace).
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; c {
	case '"':
		_, end, _, ok := scanString(b, i)
		return end + 1, ok
	case '{', '[':
		if depth >= maxDepth {
			return i, false
		}
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == close {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return i, false
				}
				_, end, _, ok := scanString(b, i)
				if !ok {
					return end, false
				}
				i = skipWS(b, end+1)
				if i >= len(b) || b[i] != ':' {
					return i, false
				}
				i = skipWS(b, i+1)
			}
			var ok bool
			i, ok = skipValue(b, i, depth+1)
			if !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == close {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipWS(b, i+1)
		}
	case 't':
		if hasToken(b, i, "true") {
			return i + 4, true
		}
	case 'f':
		if hasToken(b, i, "false") {
			return i + 5, true
		}
	case 'n':
		if hasToken(b, i, "null") {
			return i + 4, true
		}
	default:
		end, _, ok := scanNumber(b, i)
		return end, ok
	}
	return i, false
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// fastFloat converts a plain decimal token ("-12.375", "40") exactly when
// its digits fit in 2^53 and it has at most 22 fraction digits: both the
// mantissa and the power of ten are then exact float64 values, so one
// division is correctly rounded (Clinger's fast path, which strconv also
// takes, without its generality).
func fastFloat(tok []byte) (float64, bool) {
	i, neg := 0, false
	if len(tok) > 0 && tok[0] == '-' {
		neg, i = true, 1
	}
	var m uint64
	digits, frac := 0, -1
	for ; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	f := float64(m)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// parseFloat parses a number token found by scanNumber.
func parseFloat(tok []byte) (float64, bool) {
	if f, ok := fastFloat(tok); ok {
		return f, true
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		// ParseFloat reports out-of-range values as ±Inf with an error;
		// keep them as Inf so that door validation counts them.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f, true
		}
		return 0, false
	}
	return f, true
}
