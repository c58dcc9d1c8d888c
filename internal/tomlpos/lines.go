package tomlpos

import (
	"strconv"
	"strings"
)

// Lines maps each key of a TOML document (its parts joined by Sep) to
// the 1-based line where it is defined. The toml package checks the syntax
// but does not export key positions, so this is a second, forgiving scan of
// text that has already parsed: it only needs to find table headers and
// "key =" at the start of a statement, skipping the insides of values. It
// never fails; a caller whose key is missing should fall back to the line of
// the key's parent, as [Line] does.
func Lines(data []byte) map[string]int {
	s := &scanner{b: data, line: 1, lines: make(map[string]int)}
	var table []string
	for s.i < len(s.b) {
		start := s.i
		s.skipSpace()
		switch s.peek() {
		case '\n':
			s.next()
		case '#':
			s.skipComment()
		case '[':
			s.next()
			array := s.peek() == '['
			if array {
				s.next()
			}
			line := s.line
			table = s.key()
			s.record(nil, table, line)
			s.skipLine()
		default:
			line := s.line
			k := s.key()
			s.record(table, k, line)
			s.skipSpace()
			if s.peek() == '=' {
				s.next()
				s.value(append(append([]string(nil), table...), k...))
			}
			s.skipLine()
		}
		if s.i == start {
			s.next() // never stall on input this scan does not understand
		}
	}
	return s.lines
}

// Sep joins key parts in the map of Lines; no valid cell or key name holds it.
const Sep = "\x00"

// Line returns the line of key in lines, or of its nearest parent with a
// known line, or 0.
func Line(lines map[string]int, key []string) int {
	for n := len(key); n > 0; n-- {
		if l, ok := lines[strings.Join(key[:n], Sep)]; ok {
			return l
		}
	}
	return 0
}

type scanner struct {
	b     []byte
	i     int
	line  int
	lines map[string]int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) has(prefix string) bool {
	return strings.HasPrefix(string(s.b[s.i:]), prefix)
}

func (s *scanner) next() {
	if s.i < len(s.b) {
		if s.b[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}

func (s *scanner) skipSpace() {
	for c := s.peek(); c == ' ' || c == '\t' || c == '\r'; c = s.peek() {
		s.next()
	}
}

// skipBlank skips spaces, newlines and comments: the filler inside arrays
// and inline tables.
func (s *scanner) skipBlank() {
	for s.i < len(s.b) {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.next()
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) skipComment() {
	for s.i < len(s.b) && s.peek() != '\n' {
		s.next()
	}
}

// skipLine moves to the start of the next line, ignoring the rest of this
// one (a comment, a closing bracket).
func (s *scanner) skipLine() {
	s.skipComment()
	s.next()
}

// record notes the line of prefix+k and of each of its parents not yet seen,
// so that tables created implicitly by dotted keys have a line too.
func (s *scanner) record(prefix, k []string, line int) {
	full := append(append([]string(nil), prefix...), k...)
	for n := len(prefix) + 1; n <= len(full); n++ {
		j := strings.Join(full[:n], Sep)
		if _, ok := s.lines[j]; !ok {
			s.lines[j] = line
		}
	}
}

// key reads a dotted key: bare, "basic" or 'literal' parts separated by dots.
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipSpace()
		switch c := s.peek(); {
		case c == '"':
			parts = append(parts, unquoteBasic(s.str('"')))
		case c == '\'':
			parts = append(parts, s.str('\''))
		default:
			j := s.i
			for isBare(s.peek()) {
				s.next()
			}
			if j == s.i {
				return parts
			}
			parts = append(parts, string(s.b[j:s.i]))
		}
		s.skipSpace()
		if s.peek() != '.' {
			return parts
		}
		s.next()
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// str reads a one-line string opened by q and returns its raw contents.
func (s *scanner) str(q byte) string {
	s.next()
	j := s.i
	for s.i < len(s.b) && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.next()
		}
		s.next()
	}
	raw := string(s.b[j:min(s.i, len(s.b))])
	if s.peek() == q {
		s.next()
	}
	return raw
}

// unquoteBasic resolves the escapes of a basic string; a form Go does not
// know (TOML 1.1's \e, say) leaves the raw text, which only costs a line.
func unquoteBasic(raw string) string {
	if u, err := strconv.Unquote(`"` + raw + `"`); err == nil {
		return u
	}
	return raw
}

// value skips one value, recording the keys of inline tables under path.
func (s *scanner) value(path []string) {
	s.skipSpace()
	switch {
	case s.has(`"""`), s.has(`'''`):
		s.multiline(s.peek())
	case s.peek() == '"' || s.peek() == '\'':
		s.str(s.peek())
	case s.peek() == '[':
		s.next()
		for s.skipBlank(); s.i < len(s.b) && s.peek() != ']'; s.skipBlank() {
			start := s.i
			s.value(path)
			s.skipBlank()
			if s.peek() == ',' {
				s.next()
			}
			if s.i == start {
				s.next()
			}
		}
		s.next()
	case s.peek() == '{':
		s.next()
		for s.skipBlank(); s.i < len(s.b) && s.peek() != '}'; s.skipBlank() {
			start := s.i
			line := s.line
			k := s.key()
			s.record(path, k, line)
			s.skipSpace()
			if s.peek() == '=' {
				s.next()
				s.value(append(append([]string(nil), path...), k...))
			}
			s.skipBlank()
			if s.peek() == ',' {
				s.next()
			}
			if s.i == start {
				s.next()
			}
		}
		s.next()
	default:
		// Numbers, booleans and dates: up to the next delimiter.
		for s.i < len(s.b) && !strings.ContainsRune(" \t\r\n,]}#", rune(s.peek())) {
			s.next()
		}
	}
}

// multiline skips a """ or ”' string. Up to two quotes may sit right before
// the closing three, so the run of quotes that ends it is consumed whole.
func (s *scanner) multiline(q byte) {
	s.i += 3
	for s.i < len(s.b) {
		c := s.peek()
		if c == '\\' && q == '"' {
			s.next()
			s.next()
			continue
		}
		if c == q && s.has(string([]byte{q, q, q})) {
			for s.peek() == q {
				s.next()
			}
			return
		}
		s.next()
	}
}
