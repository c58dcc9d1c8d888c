package cellspec

import "testing"

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]Backend{"": Auto, "auto": Auto, "bwrap": Bwrap, "process": Process, "podman": Podman, "scope": Scope} {
		if got, ok := ParseBackend(in); !ok || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"Bwrap", "docker", " scope", "auto "} {
		if _, ok := ParseBackend(bad); ok {
			t.Errorf("ParseBackend(%q) accepted", bad)
		}
	}
}

func TestCheckNameAndKey(t *testing.T) {
	for _, good := range []string{"eye", "a", "A1_b-c"} {
		if err := CheckName(good); err != nil {
			t.Errorf("CheckName(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00", "-a", "_a", "a@b", "a.b"} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
	if Key("eye", "") != "eye" || Key("eye", "2") != "eye@2" {
		t.Error("Key")
	}
}
