package cellspec

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitKey(t *testing.T) {
	for key, want := range map[string][2]string{"eye": {"eye", ""}, "eye@2": {"eye", "2"}, "a-b@c_d": {"a-b", "c_d"}} {
		name, inst, err := SplitKey(key)
		if err != nil || name != want[0] || inst != want[1] {
			t.Errorf("SplitKey(%q) = %q, %q, %v", key, name, inst, err)
		}
	}
	for _, key := range []string{"", "@", "eye@", "@2", "eye@2@3", "../x", "eye@../x", "eye@" + strings.Repeat("a", 65)} {
		if _, _, err := SplitKey(key); !errors.Is(err, ErrInvalidName) {
			t.Errorf("SplitKey(%q): %v, want ErrInvalidName", key, err)
		}
	}
}

func FuzzSplitKey(f *testing.F) {
	for _, s := range []string{"eye", "eye@2", "a@b@c", "@", "x\x00@y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		name, inst, err := SplitKey(key)
		if err != nil {
			return
		}
		if Key(name, inst) != key || CheckName(name) != nil || (inst != "" && CheckName(inst) != nil) {
			t.Fatalf("SplitKey(%q) = %q, %q does not rebuild the key", key, name, inst)
		}
	})
}
