package termsafe

import (
	"fmt"
	"unicode/utf8"
)

// CutMarker ends a line that was cut at the length bound.
const CutMarker = "…[cut]"

// AppendLine appends line, made safe, to dst: at most max bytes of the
// line's own text (max <= 0: no bound), then CutMarker when it was longer.
// A trailing "\n" is kept as the line's end; any other newline, CR, escape
// or C0/C1 control, and DEL, becomes \n, \r, \x1b-style text; tab stays.
func AppendLine(dst, line []byte, max int) []byte {
	nl := len(line) > 0 && line[len(line)-1] == '\n'
	if nl {
		line = line[:len(line)-1]
	}
	start := len(dst)
	for len(line) > 0 {
		if max > 0 && len(dst)-start >= max {
			dst = append(dst, CutMarker...)
			break
		}
		r, size := utf8.DecodeRune(line)
		switch {
		case r == utf8.RuneError && size <= 1:
			dst = append(dst, "\uFFFD"...)
		case r == '\t':
			dst = append(dst, '\t')
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r < 0x20 || r == 0x7f:
			dst = fmt.Appendf(dst, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0:
			// C1 controls: CSI (U+009B) alone drives many terminals.
			dst = fmt.Appendf(dst, `\u%04x`, r)
		case r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			// Line separators and bidirectional overrides reorder or
			// break what a reader sees.
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, line[:size]...)
		}
		line = line[size:]
	}
	if nl {
		dst = append(dst, '\n')
	}
	return dst
}

// String returns s made safe as one line (a newline in it is escaped too),
// cut after max bytes; for cell-chosen strings in audit records and logs.
func String(s string, max int) string {
	if isPlain(s, max) {
		return s
	}
	return string(AppendLine(nil, []byte(s), max))
}

// isPlain reports whether s needs no change: short enough and only
// printable ASCII or tab.
func isPlain(s string, max int) bool {
	if max > 0 && len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}
