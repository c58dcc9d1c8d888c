package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// Every command of the table is in the usage and explains itself on --help
// without doing anything else.
func TestEveryCommandHasHelp(t *testing.T) {
	u := usage()
	for _, c := range commands {
		if !strings.Contains(u, "cellroot "+c.name) {
			t.Errorf("usage does not list %s", c.name)
		}
		var out, errOut strings.Builder
		if code := run(context.Background(), []string{c.name, "--help"}, &out, &errOut); code != 0 {
			t.Errorf("%s --help: exit %d\n%s%s", c.name, code, out.String(), errOut.String())
		}
		if out.Len()+errOut.Len() == 0 {
			t.Errorf("%s --help printed nothing", c.name)
		}
	}
	if code := run(context.Background(), []string{"no-such-command"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
