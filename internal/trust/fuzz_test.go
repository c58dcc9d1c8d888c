package trust

import "testing"

// FuzzParse checks that no trust.toml makes the loader panic, and that what
// it accepts has only valid keys.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version = 1\n[key.me]\ned25519 = \"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\ncomment = \"x\"\n"))
	f.Add([]byte("version = 1\n[key]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := Parse("trust.toml", data)
		if err != nil {
			return
		}
		for name, k := range tf.Keys {
			if len(k) != 32 || name == "" {
				t.Fatalf("accepted key %q of %d bytes", name, len(k))
			}
		}
	})
}

// FuzzParseSignature checks the signature file parser the same way.
func FuzzParseSignature(f *testing.F) {
	f.Add([]byte("version = 1\nkind = \"source\"\nsha256 = \"ab\"\nkey = \"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\nsignature = \"AA==\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignature("Cell.sig", data)
		if err != nil {
			return
		}
		if len(s.Sig) != 64 || len(s.Key) != 32 || (s.Kind != KindSource && s.Kind != KindBinary) {
			t.Fatalf("accepted %+v", s)
		}
	})
}
