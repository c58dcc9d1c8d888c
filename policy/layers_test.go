package policy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
)

// A backend that cannot apply a layer is refused unless the entry accepts
// exactly that layer; the decision then names what is missing.
func TestDecideMissingLayers(t *testing.T) {
	st := hybridHost()
	st.Backends[cellspec.Bwrap] = Capability{Available: true, Reason: "bubblewrap 0.4",
		Missing: []capsid.Layer{capsid.UsernsBlock, capsid.BoundedTmp}}
	al := testAllowlist()
	for _, tt := range []struct {
		name   string
		accept []capsid.Layer
		code   Code
	}{
		{"none accepted", nil, LayersMissing},
		{"one of two", []capsid.Layer{capsid.UsernsBlock}, LayersMissing},
		{"another layer", []capsid.Layer{capsid.Filter, capsid.FreshKeyring}, LayersMissing},
		{"both", []capsid.Layer{capsid.BoundedTmp, capsid.UsernsBlock}, OK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := al.Cells["eye"]
			c.Backend, c.AcceptMissingLayers = cellspec.Bwrap, tt.accept
			al.Cells["eye"] = c
			d := Decide(Request{Name: "eye"}, al, st)
			if d.Code != tt.code {
				t.Fatalf("code %s (%s), want %s", d.Code, d.Reason, tt.code)
			}
			if d.Code == OK {
				if !reflect.DeepEqual(d.Missing, []capsid.Layer{capsid.UsernsBlock, capsid.BoundedTmp}) || !strings.Contains(d.Reason, "without userns_block, bounded_tmp") {
					t.Fatalf("allowed without naming the missing layers: %v %q", d.Missing, d.Reason)
				}
			} else if !strings.Contains(d.Reason, "accept_missing_layers") {
				t.Fatalf("reason does not say how to accept: %q", d.Reason)
			}
		})
	}
	// A process cell has no sandbox at all: layers do not apply to it.
	st.Backends[cellspec.Process] = Capability{Available: true, Missing: capsid.Layers}
	if d := Decide(Request{Name: "dev"}, al, st); d.Code != LimitsUnenforceable && d.Code != OK {
		t.Fatalf("process cell: %s %s", d.Code, d.Reason)
	}
}
