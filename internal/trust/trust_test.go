package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "me.key")
	if err := WritePrivateKey(keyFile, priv); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateKey(keyFile, priv); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote a key: %v", err)
	}
	key, err := LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	trustText := "version = 1\n# mine\n[key.me]\ned25519 = \"" + pub + "\"\ncomment = \"laptop\"\n"
	trusted, err := Parse("trust.toml", []byte(trustText))
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.Repeat("a1", 32)
	sigFile := filepath.Join(dir, "Cell.sig")
	if err := os.WriteFile(sigFile, Sign(key, KindSource, digest), 0o644); err != nil {
		t.Fatal(err)
	}
	if name, err := VerifyFile(sigFile, KindSource, digest, trusted); err != nil || name != "me" {
		t.Fatalf("verify: %q %v", name, err)
	}
	if _, err := VerifyFile(sigFile, KindSource, strings.Repeat("b2", 32), trusted); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other digest: %v", err)
	}
	if _, err := VerifyFile(sigFile, KindBinary, digest, trusted); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other kind: %v", err)
	}
	_, otherPub, _ := GenerateKey()
	other, _ := Parse("trust.toml", []byte("version = 1\n[key.them]\ned25519 = \""+otherPub+"\"\n"))
	if _, err := VerifyFile(sigFile, KindSource, digest, other); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("unknown key: %v", err)
	}
	// A signature whose bytes were changed.
	data, _ := os.ReadFile(sigFile)
	sig, err := ParseSignature("Cell.sig", data)
	if err != nil {
		t.Fatal(err)
	}
	sig.SHA256 = strings.Repeat("b2", 32)
	if _, err := Verify(sig, KindSource, sig.SHA256, trusted); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged digest: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	_, pub, _ := GenerateKey()
	for _, tc := range []struct{ text, want string }{
		{"[key.a]\ned25519 = \"" + pub + "\"\n", "t.toml: version: missing"},
		{"version = 2\n", "t.toml:1: version: unsupported"},
		{"version = 1\n[key.a]\ned25519 = \"" + pub + "\"\nnote = 1\n", "t.toml:4: key.a.note: unknown key"},
		{"version = 1\nkeys = 1\n", "t.toml:2: keys: unknown key"},
		{"version = 1\n[key.a]\ned25519 = \"rsa:xyz\"\n", "t.toml:3: key.a.ed25519"},
		{"version = 1\n[key.a]\ned25519 = \"" + pub + "\"\n[key.b]\ned25519 = \"" + pub + "\"\n", "t.toml:5: key.b.ed25519: the same key"},
		{"version = 1\n[key.\"a b\"]\ned25519 = \"" + pub + "\"\n", "t.toml:2: key.\"a b\": not a valid key name"},
		{"version = 1\n[key.a\n", "t.toml:3: expected"},
	} {
		_, err := Parse("t.toml", []byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.text, err, tc.want)
		}
	}
}

func TestLoadRefusesUnsafeModes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "trust.toml")
	os.WriteFile(p, []byte("version = 1\n"), 0o666)
	os.Chmod(p, 0o666)
	if _, err := Load(p); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("world-writable trust.toml: %v", err)
	}
	if _, err := Load(p + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

// TestDocExample keeps docs/trust.example.toml valid.
func TestDocExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/trust.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("trust.example.toml", data)
	if err != nil || len(f.Keys) != 1 {
		t.Fatalf("%v %+v", err, f)
	}
}
