package termsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"hello\n", 0, "hello\n"},
		{"tab\there\n", 0, "tab\there\n"},
		{"\x1b]0;owned\x07title\n", 0, `\x1b]0;owned\x07title` + "\n"},
		{"fake\r[root] ok\n", 0, `fake\r[root] ok` + "\n"},
		{"bad \xff\xfe utf8", 0, "bad \uFFFD\uFFFD utf8"},
		{"csi \u009b31m", 0, `csi \u009b31m`},
		{"bidi \u202eevil", 0, `bidi \u202eevil`},
		{"two\nlines\n", 0, `two\nlines` + "\n"},
		{"del\x7f", 0, `del\x7f`},
		{"ünïcødé ok", 0, "ünïcødé ok"},
		{"abcdefgh\n", 4, "abcd" + CutMarker + "\n"},
	} {
		if got := string(AppendLine(nil, []byte(c.in), c.max)); got != c.want {
			t.Errorf("AppendLine(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func TestString(t *testing.T) {
	if got := String("plain", 0); got != "plain" {
		t.Fatal(got)
	}
	if got := String("a\nb", 0); got != `a\nb` {
		t.Fatal(got)
	}
	if got := String(strings.Repeat("x", 100), 10); got != strings.Repeat("x", 10)+CutMarker {
		t.Fatal(got)
	}
}

// FuzzAppendLine: whatever a cell writes, the result is valid UTF-8 with no
// control character but tab and the final newline, and bounded.
func FuzzAppendLine(f *testing.F) {
	for _, s := range []string{"", "\n", "\x1b[2J\x1b[H", "\xff\xfe\xfd", "a\rb\n", "\u009b\u202e", strings.Repeat("é", 50)} {
		f.Add([]byte(s), 16)
	}
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max %= 1 << 12
		out := AppendLine(nil, in, max)
		if !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 out of %q: %q", in, out)
		}
		body := strings.TrimSuffix(string(out), "\n")
		for _, r := range body {
			if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("control %U left in %q (from %q)", r, out, in)
			}
		}
		if max > 0 {
			// Each rune of input grows to at most 6 bytes (\u009b); the cut
			// happens once max bytes of output are reached.
			if limit := max + 6 + len(CutMarker) + 1; len(out) > limit {
				t.Fatalf("%d bytes out for max %d", len(out), max)
			}
		}
	})
}
