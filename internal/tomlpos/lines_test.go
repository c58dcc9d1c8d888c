package tomlpos

import (
	"strings"
	"testing"
)

func TestKeyLines(t *testing.T) {
	src := `# comment [not.a.table]
version = 1
notes = """
fake = 1
[cell.fake]
"""
lit = '''x''' # trailing
arr = [
  "a", # c
  { inline = 1 },
]
[cell."quoted name"]
exec = "/x" # [cell.nope]
[cell . spaced]
a.b = { c = 2, d = [1,
  2], e = 3 }
[[arrays.of]]
k = 'v'
`
	got := Lines([]byte(src))
	for key, line := range map[string]int{
		"version":                       2,
		"notes":                         3,
		"lit":                           7,
		"arr":                           8,
		"arr\x00inline":                 10,
		"cell":                          12,
		"cell\x00quoted name":           12,
		"cell\x00quoted name\x00exec":   13,
		"cell\x00spaced":                14,
		"cell\x00spaced\x00a\x00b":      15,
		"cell\x00spaced\x00a\x00b\x00c": 15,
		"cell\x00spaced\x00a\x00b\x00e": 16,
		"arrays\x00of":                  17,
		"arrays\x00of\x00k":             18,
	} {
		if got[key] != line {
			t.Errorf("line of %q = %d, want %d", strings.ReplaceAll(key, Sep, "."), got[key], line)
		}
	}
	for _, absent := range []string{"fake", "cell\x00fake", "cell\x00nope"} {
		if _, ok := got[absent]; ok {
			t.Errorf("%q found inside a string or comment", absent)
		}
	}
}
