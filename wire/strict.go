package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// encoding/json alone is not strict: it matches keys case-insensitively with
// Unicode folding ("OP" and "to\u212Aen" reach op and token), lets a duplicate
// key win silently and turns invalid UTF-8 and lone surrogate escapes into
// U+FFFD. checkObject runs before it and refuses all of that, so that what
// the root acts on is exactly what the peer wrote.

// checkObject verifies that payload is valid UTF-8 holding one JSON object
// whose top-level keys are spelled exactly as in known, none twice, and whose
// string escapes encode valid Unicode. It returns the keys present.
func checkObject(payload []byte, known map[string]bool) (map[string]bool, error) {
	if !utf8.Valid(payload) {
		return nil, fmt.Errorf("%w: the payload is not valid UTF-8", ErrMalformed)
	}
	if err := checkEscapes(payload); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: object key is not a string", ErrMalformed)
		}
		switch {
		case !known[key]:
			return nil, fmt.Errorf("%w: unknown field %q (keys are case-sensitive)", ErrMalformed, key)
		case seen[key]:
			return nil, fmt.Errorf("%w: field %q appears twice", ErrMalformed, key)
		}
		seen[key] = true
		if err := skipValue(dec); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the message", ErrMalformed)
	}
	return seen, nil
}

// skipValue consumes one value, however deeply nested.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// checkEscapes refuses \u escapes inside strings that do not encode a
// Unicode scalar value: a high surrogate not followed by a low one, or a
// low surrogate alone. Other syntax errors are left to the JSON decoder.
func checkEscapes(b []byte) error {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\':
			if i+1 >= len(b) {
				return nil
			}
			if b[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				return nil // the decoder reports the bad escape
			}
			i += 5
			switch {
			case utf16.IsSurrogate(r) && r < 0xdc00:
				low, ok := rune(0), i+2 < len(b) && b[i+1] == '\\' && b[i+2] == 'u'
				if ok {
					low, ok = hex4(b, i+3)
				}
				if !ok || utf16.DecodeRune(r, low) == utf8.RuneError {
					return fmt.Errorf("%w: escape \\u%04x is a high surrogate without its low half", ErrMalformed, r)
				}
				i += 6
			case utf16.IsSurrogate(r):
				return fmt.Errorf("%w: escape \\u%04x is a lone low surrogate", ErrMalformed, r)
			}
		}
	}
	return nil
}

// hex4 parses the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
