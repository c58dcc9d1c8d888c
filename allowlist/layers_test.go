package allowlist

import (
	"reflect"
	"testing"

	"github.com/cellproject/cell/internal/capsid"
)

func TestParseAcceptMissingLayers(t *testing.T) {
	f, err := Parse("a.toml", []byte("version = 1\n[cell.eye]\nexec = \"/bin/eye\"\naccept_missing_layers = [\"userns_block\", \"seccomp_filter\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Cells["eye"].AcceptMissingLayers; !reflect.DeepEqual(got, []capsid.Layer{capsid.UsernsBlock, capsid.Filter}) {
		t.Fatalf("accepted %v", got)
	}
}
