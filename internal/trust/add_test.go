package trust

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddKeyKeepsTextAndRefusesDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cell", "trust.toml")
	_, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := AddKey(path, "me", pub); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil || len(f.Keys) != 1 {
		t.Fatalf("after the first key: %v, %v", f, err)
	}
	// The user's own words survive the next add.
	text, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(text, []byte("# mine\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := AddKey(path, "me", pub); err == nil {
		t.Fatal("a second [key.me] was accepted")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("a refused add changed the file")
	}
	_, pub2, _ := GenerateKey()
	if err := AddKey(path, "other", pub2); err != nil {
		t.Fatal(err)
	}
	final, _ := os.ReadFile(path)
	if !strings.Contains(string(final), "# mine") {
		t.Fatalf("the user's comment is gone:\n%s", final)
	}
}
