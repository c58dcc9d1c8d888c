package allowlist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

func TestParseDefaults(t *testing.T) {
	f, err := Parse("a.toml", []byte("version = 1\n\n[cell.eye]\nexec = \"/bin/eye\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Path:          "a.toml",
		Version:       1,
		SessionLimits: SessionLimits{MaxCells: 32, MaxDepth: 4},
		Cells: map[string]Cell{"eye": {
			Name:         "eye",
			Exec:         "/bin/eye",
			Backend:      cellspec.Auto,
			MaxInstances: 1,
			Line:         3,
		}},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Parse = %+v\nwant    %+v", f, want)
	}
}

// A file that only states its version is valid and lists nothing, so that
// the root denies every request.
func TestParseEmpty(t *testing.T) {
	f, err := Parse("a.toml", []byte("# nothing yet\nversion = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Cells) != 0 || f.Cells == nil {
		t.Errorf("Cells = %#v, want an empty map", f.Cells)
	}
}

func TestParseExample(t *testing.T) {
	path := filepath.Join("..", "docs", "allowlist.example.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.SessionLimits; got != (SessionLimits{MaxCells: 16, MaxDepth: 3}) {
		t.Errorf("Session = %+v", got)
	}
	eye := f.Cells["eye"]
	wantEye := Cell{
		Name:         "eye",
		Exec:         "/home/alice/apps/vision/bin/eye",
		Args:         []string{"--frames", "30"},
		Backend:      cellspec.Auto,
		Spawn:        []string{"retina"},
		MaxInstances: 2,
		Limits:       quota.Limits{MemoryBytes: 256 << 20, CPU: 0.5, Pids: 64},
		Line:         15,
	}
	if !reflect.DeepEqual(eye, wantEye) {
		t.Errorf("eye = %+v\nwant  %+v", eye, wantEye)
	}
	retina := f.Cells["retina"]
	if retina.Backend != cellspec.Podman || !retina.AcceptUnenforcedLimits ||
		retina.Limits != (quota.Limits{MemoryBytes: 3 << 29, CPU: 2}) {
		t.Errorf("retina = %+v", retina)
	}
	if dev := f.Cells["devtool"]; dev.Backend != cellspec.Process || !dev.Network {
		t.Errorf("devtool = %+v", dev)
	}
}

func TestParseBackends(t *testing.T) {
	for in, want := range map[string]cellspec.Backend{
		"": cellspec.Auto, "auto": cellspec.Auto, "bwrap": cellspec.Bwrap,
		"process": cellspec.Process, "podman": cellspec.Podman, "scope": cellspec.Scope,
	} {
		f, err := Parse("a.toml", []byte("version = 1\n[cell.a]\nexec = \"/a\"\nbackend = \""+in+"\"\n"))
		if err != nil {
			t.Fatalf("backend %q: %v", in, err)
		}
		if got := f.Cells["a"].Backend; got != want {
			t.Errorf("backend %q = %q, want %q", in, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const head = "version = 1\n"
	const eye = head + "[cell.eye]\nexec = \"/bin/eye\"\n" // the next line is 4
	for _, tt := range []struct {
		name string
		in   string
		line int
		key  string
		msg  string // a fragment of Msg
		is   error  // when set, the error must wrap it
	}{
		{"syntax", "version = = 1\n", 1, "version", "expected value", nil},
		{"unknown layer", eye + "accept_missing_layers = [\"seccomp\"]\n", 4, "cell.eye.accept_missing_layers", "unknown sandbox layer \"seccomp\"", nil},
		{"layer twice", eye + "accept_missing_layers = [\"bounded_tmp\", \"bounded_tmp\"]\n", 4, "cell.eye.accept_missing_layers", "listed twice", nil},
		{"layers not a list", eye + "accept_missing_layers = true\n", 4, "cell.eye.accept_missing_layers", "", nil},
		{"missing version", "[session]\n", 0, "version", "missing", nil},
		{"version 2", "version = 2\n", 1, "version", "unsupported version 2", nil},
		{"version string", "version = \"1\"\n", 1, "version", "must be an integer, not a string", nil},
		{"unknown top", head + "\n\nverison = 1\n", 4, "verison", "unknown key", nil},
		{"upper-case key", head + "VERSION = 1\n", 2, "VERSION", "unknown key", nil},
		{"unknown session key", head + "[session]\nmax_cell = 3\n", 3, "session.max_cell", "unknown key", nil},
		{"session not table", head + "session = 3\n", 2, "session", "must be a table, not an integer", nil},
		{"max_cells 0", head + "[session]\nmax_cells = 0\n", 3, "session.max_cells", "out of range 1..1024", nil},
		{"max_cells big", head + "[session]\nmax_cells = 1025\n", 3, "session.max_cells", "out of range", nil},
		{"max_depth 65", head + "[session]\nmax_depth = 65\n", 3, "session.max_depth", "out of range 1..64", nil},
		{"max_depth float", head + "[session]\nmax_depth = 1.5\n", 3, "session.max_depth", "not a float", nil},
		{"cell not table", head + "cell = [1]\n", 2, "cell", "must be a table, not an array", nil},
		{"cell entry not table", head + "[cell]\neye = 1\n", 3, "cell.eye", "must be a table", nil},
		{"bad name", head + "[cell.\"../x\"]\nexec = \"/x\"\n", 2, `cell."../x"`, "not a valid cell name", cellspec.ErrInvalidName},
		{"dotted name", head + "[cell.a.b]\nexec = \"/x\"\n", 2, "cell.a.b", "unknown key", nil},
		{"missing exec", head + "\n[cell.eye]\nnetwork = true\n", 3, "cell.eye.exec", "missing", nil},
		{"relative exec", head + "[cell.eye]\nexec = \"bin/eye\"\n", 3, "cell.eye.exec", "not an absolute path", nil},
		{"dotdot exec", head + "[cell.eye]\nexec = \"/bin/../eye\"\n", 3, "cell.eye.exec", `contains ".."`, nil},
		{"unclean exec", head + "[cell.eye]\nexec = \"/bin//eye\"\n", 3, "cell.eye.exec", `write "/bin/eye"`, nil},
		{"root exec", head + "[cell.eye]\nexec = \"/\"\n", 3, "cell.eye.exec", "root directory", nil},
		{"empty exec", head + "[cell.eye]\nexec = \"\"\n", 3, "cell.eye.exec", "empty", nil},
		{"exec int", head + "[cell.eye]\nexec = 5\n", 3, "cell.eye.exec", "must be a string, not an integer", nil},
		{"args string", eye + "args = \"-v\"\n", 4, "cell.eye.args", "array of strings", nil},
		{"args mixed", eye + "args = [\"-v\", 3]\n", 4, "cell.eye.args", "element 1 must be a string", nil},
		{"args nul", eye + "args = [\"a\\u0000b\"]\n", 4, "cell.eye.args", "NUL", nil},
		{"backend", eye + "backend = \"docker\"\n", 4, "cell.eye.backend", `unknown backend "docker"`, nil},
		{"backend case", eye + "backend = \"Podman\"\n", 4, "cell.eye.backend", "unknown backend", nil},
		{"network string", eye + "network = \"yes\"\n", 4, "cell.eye.network", "true or false", nil},
		{"spawn unlisted", eye + "spawn = [\"retina\"]\n", 4, "cell.eye.spawn", `"retina" is not listed`, nil},
		{"spawn bad name", eye + "spawn = [\"a/b\"]\n", 4, "cell.eye.spawn", "not a valid cell name", cellspec.ErrInvalidName},
		{"spawn twice", eye + "spawn = [\"eye\", \"eye\"]\n", 4, "cell.eye.spawn", "listed twice", nil},
		{"max_instances 0", eye + "max_instances = 0\n", 4, "cell.eye.max_instances", "out of range 1..64", nil},
		{"max_instances 65", eye + "max_instances = 65\n", 4, "cell.eye.max_instances", "out of range", nil},
		{"accept string", eye + "accept_unenforced_limits = 1\n", 4, "cell.eye.accept_unenforced_limits", "true or false", nil},
		{"unknown cell key", eye + "\nnetwrok = true\n", 5, "cell.eye.netwrok", "unknown key", nil},
		{"unknown under dotted", eye + "a.b.c = 1\n", 4, "cell.eye.a", "unknown key", nil},
		{"limits not table", eye + "limits = 5\n", 4, "cell.eye.limits", "must be a table", nil},
		{"memory garbage", eye + "[cell.eye.limits]\nmemory = \"lots\"\n", 5, "cell.eye.limits.memory", "lots", quota.ErrInvalid},
		{"memory zero", eye + "[cell.eye.limits]\nmemory = \"0\"\n", 5, "cell.eye.limits.memory", "zero", quota.ErrInvalid},
		{"memory negative int", eye + "[cell.eye.limits]\nmemory = -5\n", 5, "cell.eye.limits.memory", "at least 1", nil},
		{"memory bool", eye + "[cell.eye.limits]\nmemory = true\n", 5, "cell.eye.limits.memory", "not a boolean", nil},
		{"cpu negative", eye + "[cell.eye.limits]\ncpu = -1\n", 5, "cell.eye.limits.cpu", "negative", quota.ErrInvalid},
		{"cpu zero", eye + "[cell.eye.limits]\ncpu = 0.0\n", 5, "cell.eye.limits.cpu", "0 cores", nil},
		{"cpu nan", eye + "[cell.eye.limits]\ncpu = nan\n", 5, "cell.eye.limits.cpu", "finite", quota.ErrInvalid},
		{"cpu inf", eye + "[cell.eye.limits]\ncpu = inf\n", 5, "cell.eye.limits.cpu", "finite", quota.ErrInvalid},
		{"cpu huge", eye + "[cell.eye.limits]\ncpu = 5000\n", 5, "cell.eye.limits.cpu", "1024", quota.ErrInvalid},
		{"cpu string", eye + "[cell.eye.limits]\ncpu = \"50%\"\n", 5, "cell.eye.limits.cpu", "not a string", nil},
		{"pids 0", eye + "[cell.eye.limits]\npids = 0\n", 5, "cell.eye.limits.pids", "out of range", nil},
		{"unknown limit", eye + "[cell.eye.limits]\nswap = \"1G\"\n", 5, "cell.eye.limits.swap", "unknown key", nil},
		{"inline limits", eye + "limits = { memory = \"1G\",\n  cpux = 1 }\n", 5, "cell.eye.limits.cpux", "unknown key", nil},
		{"array of tables", eye + "[[cell.eye.args]]\nx = 1\n", 4, "cell.eye.args", "array of strings, not an array of tables", nil},
		{"earliest wins", head + "[cell.b]\nexec = \"rel\"\n[cell.a]\nexec = \"rel\"\n", 3, "cell.b.exec", "absolute", nil},
		{"too large", "version = 1\n" + strings.Repeat("#", MaxSize), 0, "", "larger than", ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("allow.toml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.File != "allow.toml" || e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %#v\nwant line %d key %q msg containing %q", e, tt.line, tt.key, tt.msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Key: "cell.eye.exec", Msg: "missing"}, "a.toml:3: cell.eye.exec: missing"},
		{Error{File: "a.toml", Key: "version", Msg: "missing"}, "a.toml: version: missing"},
		{Error{File: "a.toml", Line: 1, Msg: "bad syntax"}, "a.toml:1: bad syntax"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("version = 1\nbogus = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("invalid file: %v, want an *Error at line 2", err)
	}

	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("version = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := Load(good); err != nil || f.Path != good {
		t.Errorf("Load(good) = %+v, %v", f, err)
	}

	if err := os.Chmod(good, 0o622); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good); !errors.Is(err, ErrUnsafe) {
		t.Errorf("group-writable file: %v, want ErrUnsafe", err)
	}

	if _, err := Load(dir); !errors.As(err, &e) || !strings.Contains(e.Msg, "not a regular file") {
		t.Errorf("directory: %v, want not a regular file", err)
	}

	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", MaxSize+10)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("big file: %v, want ErrTooLarge", err)
	}
}

func TestPinsAndSource(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	ok := "version = 1\n[cell.eye]\nexec = \"/c/eye\"\nsource = \"/app/cells/eye\"\nsha256 = \"" + digest +
		"\"\nsource_sha256 = \"" + digest + "\"\nrequire_signature = true\n"
	f, err := Parse("a.toml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Cells["eye"]
	if c.Source != "/app/cells/eye" || c.SHA256 != digest || c.SourceSHA256 != digest || !c.RequireSignature {
		t.Fatalf("parsed %+v", c)
	}
	for _, tc := range []struct{ text, want string }{
		{"version = 1\n[cell.eye]\nexec = \"/c/eye\"\nsha256 = \"ABC\"\n", "a.toml:4: cell.eye.sha256"},
		{"version = 1\n[cell.eye]\nexec = \"/c/eye\"\nsource_sha256 = \"" + digest + "\"\n", "a.toml:4: cell.eye.source_sha256: pins a source tree"},
		{"version = 1\n[cell.eye]\nexec = \"/c/eye\"\nsource = \"rel/dir\"\n", "a.toml:4: cell.eye.source"},
		{"version = 1\n[cell.eye]\nexec = \"/c/eye\"\nrequire_signature = 1\n", "a.toml:4: cell.eye.require_signature"},
	} {
		_, err := Parse("a.toml", []byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.text, err, tc.want)
		}
	}
}
